import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


@pytest.fixture(scope='session')
def workspace(tmp_path_factory):
    """A folder laid out like the repo root for the tiny configs, with the
    tiny default (16 charts) built under work_dirs/tiny."""
    from xtuner_chartmoe.devkit.tiny import build_tiny_default
    root = tmp_path_factory.mktemp('ws')
    build_tiny_default(str(root / 'work_dirs' / 'tiny'), seed=0,
                       num_charts=16, num_workers=2, progress=False)
    return root


def run_tool(args, cwd, check=True, stdin=None):
    """Run ``python args...`` in ``cwd`` (``stdin``: text fed to it); return
    the CompletedProcess."""
    result = subprocess.run([sys.executable, *args], cwd=cwd, input=stdin,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f'{args} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result


NARROW_INTERNLM2 = dict(hidden_size=64, intermediate_size=128,
                        num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope='session')
def narrow_standins(tmp_path_factory):
    """InternLM2-chat-7B / CLIP-ViT-L/14-336 stand-ins with a narrow LLM
    (hidden 64; the real vocabulary, chat tokens and remote code) for fast
    tests of the InternLM2 code paths; see xtuner_chartmoe/standin.py."""
    from xtuner_chartmoe.devkit.standin import build_standins
    return build_standins(tmp_path_factory.mktemp('narrow'), llm_layers=2,
                          vision_layers=2, num_charts=4, **NARROW_INTERNLM2)


@pytest.fixture(scope='session')
def tiny_connector(workspace):
    """The MoE connector the tiny SFT config loads
    (work_dirs/tiny_moe_connector): upcycled from the general projector
    unless the pipeline already built it from aligned projectors."""
    path = workspace / 'work_dirs' / 'tiny_moe_connector'
    if not path.is_dir():
        run_tool([osp.join(REPO, 'tools', 'build_moe_connector.py'),
                  'upcycle', str(path), '--projectors',
                  'work_dirs/tiny/general_projector'], cwd=workspace)
    return path


def build_tiny_model(workspace, **kwargs):
    """A ChartMoEModel on the tiny default (LLM frozen, no activation
    checkpointing unless ``kwargs`` say otherwise), seeded."""
    import torch
    from transformers import AutoModelForCausalLM, CLIPVisionModel

    from xtuner_chartmoe.model import ChartMoEModel
    tiny = workspace / 'work_dirs' / 'tiny'
    options = dict(freeze_llm=True, use_activation_checkpointing=False)
    options.update(kwargs)
    torch.manual_seed(0)
    return ChartMoEModel(
        llm=AutoModelForCausalLM.from_pretrained(tiny / 'llm'),
        visual_encoder=CLIPVisionModel.from_pretrained(tiny / 'clip'),
        **options)


@pytest.fixture(scope='session')
def tiny_batches(workspace):
    """Two collated batches of 4 chart-QA samples of the tiny default."""
    from transformers import AutoTokenizer, CLIPImageProcessor
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE

    from xtuner_chartmoe.dataset import ChartLLaVADataset, chartqa_map_fn
    tiny = workspace / 'work_dirs' / 'tiny'
    dataset = ChartLLaVADataset(
        image_folder=str(tiny / 'data'),
        data_path=str(tiny / 'data' / 'sft_chartqa.json'),
        image_processor=CLIPImageProcessor.from_pretrained(tiny / 'clip'),
        tokenizer=AutoTokenizer.from_pretrained(tiny / 'llm'),
        dataset_map_fn=chartqa_map_fn, template_map_fn=template_map_fn_factory(
            PROMPT_TEMPLATE.internlm2_chat), max_length=512,
        pad_image_to_square=True, map_num_proc=1)
    return [default_collate_fn([dataset[i] for i in range(j, j + 4)])
            for j in (0, 4)]


def model_loss(model, batch):
    """The loss dict of ``model`` on a copy of ``batch``."""
    import torch
    data = {k: (v.clone() if torch.is_tensor(v) else v)
            for k, v in batch['data'].items()}
    return model(data, mode='loss')


def training_losses(work_dir):
    """The losses logged by the newest run in ``work_dir``."""
    from xtuner_chartmoe.engine.run_log import logged_scalars
    return [row['loss'] for row in logged_scalars(work_dir)]


def chartmoe_layout_logits(model, pixels, ids):
    """Logits of ChartMoE's inference layout through an IXC2-family
    model's public API (ours or a release's remote code): ``<s>``, the
    image, the prompt ``ids [1, L]``."""
    import torch
    with torch.no_grad():
        image = model.encode_images(pixels.to(model.dtype))
        embeds = torch.cat([model.embed_tokens(ids[:, :1]), image,
                            model.embed_tokens(ids[:, 1:])], 1)
        mask = torch.zeros(embeds.shape[:2], dtype=torch.bool)
        mask[:, 1:1 + image.shape[1]] = True
        return model(inputs_embeds=embeds, im_mask=mask).logits
