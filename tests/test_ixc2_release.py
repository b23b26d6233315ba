"""The IXC2 family after training: a tiny SFT checkpoint (MoE connector +
LoRA, trained by ``chartmoe train``) through XTuner's ``xtuner convert
pth_to_hf`` (the base built on meta, no compatibility fix needed) and
``chartmoe merge`` into the released ChartMoE layout (arXiv 2409.03277,
IDEA-FinAI/ChartMoE ``chartmoe/train/chartmoe_construction.py``): the
published keys and config, the LoRA folded in exactly, the folder's own
remote code loading where xtuner_chartmoe is absent with our model's
logits, ChartMoE's ``mlp_moe.pth`` round trip, an align checkpoint's dense
release and the folder answering through ``load_chat_model``."""
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, chartmoe_layout_logits, run_tool

SFT = osp.join(REPO, 'configs', 'chartmoe', 'tiny',
               'chartmoe_tiny_ixc2_lora_e12_cpu_sft.py')
ALIGN = osp.join(REPO, 'configs', 'chartmoe', 'tiny',
                 'chartmoe_tiny_ixc2_align_table_e3_cpu.py')
TARGETS = ('attention.wqkv', 'attention.wo', 'feed_forward.w1',
           'feed_forward.w2', 'feed_forward.w3')


def chartmoe(root, *args):
    return run_tool(['-m', 'xtuner_chartmoe.commands.cli', *args], cwd=root)


@pytest.fixture(scope='session')
def sft(tmp_path_factory):
    """The tiny IXC2, a 2-iteration SFT of its config, XTuner's own
    ``xtuner convert pth_to_hf --fp32`` of the checkpoint (the script run
    by path, a dtype given by name) and ``chartmoe merge`` into
    ``work_dirs/release``."""
    from xtuner_chartmoe.devkit.tiny_ixc2 import build_tiny_ixc2
    from xtuner_chartmoe.engine.run_log import last_checkpoint
    root = tmp_path_factory.mktemp('ixc2_release')
    tiny = root / 'work_dirs' / 'tiny_ixc2'
    build_tiny_ixc2(str(tiny), num_charts=8, num_workers=1, progress=False)
    chartmoe(root, 'train', SFT, '--cfg-options',
             'train_dataloader.dataset.times=1',
             'train_dataloader.dataset.dataset.data_mix='
             '[(chartqa.json,4),(chartgemma.json,4)]')
    checkpoint = last_checkpoint(
        str(root / 'work_dirs' / 'chartmoe_tiny_ixc2_lora_e12_cpu_sft'))
    hf = root / 'work_dirs' / 'hf'
    convert = xtuner_cli(root, 'convert', 'pth_to_hf', SFT, checkpoint,
                         str(hf), '--fp32', '--cfg-options',
                         'model.llm.torch_dtype=float32')
    assert 'All done!' in convert.stdout + convert.stderr, convert.stderr
    release = root / 'work_dirs' / 'release'
    chartmoe(root, 'merge', str(hf), str(release))
    return dict(root=root, tiny=tiny, checkpoint=checkpoint, hf=hf,
                release=release)


def xtuner_cli(root, *args):
    """XTuner's own ``xtuner`` command, which runs its tools' scripts by
    path with the ``python`` on ``PATH`` and exits 0 whatever they do."""
    bin_dir = osp.dirname(sys.executable)
    return subprocess.run(
        [osp.join(bin_dir, 'xtuner'), *args], cwd=root, capture_output=True,
        text=True, env=dict(os.environ, PATH=bin_dir + os.pathsep +
                            os.environ['PATH']))


@pytest.mark.filterwarnings('ignore:.*non-meta')
def test_pth_to_hf_builds_the_base_on_meta(sft, monkeypatch):
    """As XTuner's pth_to_hf builds it (accelerate's init_empty_weights):
    the IXC2 base stays on the meta device, no weight read; the connector
    is there to be filled from the checkpoint."""
    from accelerate import init_empty_weights
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.families.ixc2 import checkpoint
    monkeypatch.setattr(checkpoint.WeightFiles, 'read', None)  # no read
    cfg = Config.fromfile(SFT)
    cfg.model.llm.source = str(sft['tiny'] / 'ixc2')
    cfg.model.moe_projector.pretrained = str(sft['tiny'] / 'moe_connector')
    with init_empty_weights():
        model = BUILDER.build(cfg.model)
    assert model.llm is model.ixc2
    base = [p for n, p in model.named_parameters() if 'vision_proj' not in n]
    assert base and all(p.is_meta for p in base)
    assert {p.dtype for p in base} == {torch.float32}


def trained_model(sft):
    """The SFT model of the config with the checkpoint's tensors."""
    from xtuner.model.utils import guess_load_checkpoint
    from xtuner.registry import BUILDER
    cfg = Config.fromfile(SFT)
    cfg.model.llm.source = str(sft['tiny'] / 'ixc2')
    cfg.model.moe_projector.pretrained = str(sft['tiny'] / 'moe_connector')
    model = BUILDER.build(cfg.model)
    model.load_state_dict(guess_load_checkpoint(sft['checkpoint']),
                          strict=False)
    return model


def ixc2_state(folder):
    from xtuner_chartmoe.model import load_hf_folder_state
    return load_hf_folder_state(str(folder))


def test_hf_layout_holds_the_connector_adapter_and_manifest(sft):
    hf = sft['hf']
    assert sorted(os.listdir(hf)) == ['chartmoe_ixc2_hf.json', 'llm_adapter',
                                      'vision_proj', 'xtuner_config.py']
    manifest = json.loads((hf / 'chartmoe_ixc2_hf.json').read_text())
    assert manifest == {'base': str(sft['tiny'] / 'ixc2'),
                        'torch_dtype': 'float32', 'connector': 'vision_proj',
                        'llm_adapter': 'llm_adapter'}
    adapter = json.loads((hf / 'llm_adapter' / 'adapter_config.json')
                         .read_text())
    assert (adapter['r'], adapter['lora_alpha']) == (16, 16)
    assert sorted(adapter['target_modules']) == ['w1', 'w2', 'w3', 'wo',
                                                 'wqkv']


def test_release_has_the_published_keys_and_config(sft):
    from xtuner_chartmoe.families.ixc2 import IXC2Config, IXC2ForCausalLM
    release, base = sft['release'], sft['tiny'] / 'ixc2'
    config = json.loads((release / 'config.json').read_text())
    base_config = json.loads((base / 'config.json').read_text())
    assert (config['num_experts'], config['num_selected']) == (4, 2)
    assert config['architectures'] == ['InternLMXComposer2ForCausalLM']
    assert config['auto_map'] == {
        'AutoConfig': 'configuration_ixc2.IXC2Config',
        'AutoModel': 'modeling_ixc2.IXC2ForCausalLM',
        'AutoModelForCausalLM': 'modeling_ixc2.IXC2ForCausalLM'}
    changed = {'num_experts', 'num_selected', 'auto_map'}
    assert {k: v for k, v in config.items() if k not in changed} == {
        k: v for k, v in base_config.items() if k != 'auto_map'}
    expected = IXC2ForCausalLM(IXC2Config.from_released(str(release)))
    layout = {k: tuple(v.shape) for k, v in expected.state_dict().items()
              if k != 'vision_proj.num_selected'}
    state = ixc2_state(release)
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    assert {k for k in state if k.startswith('vision_proj.')} == {
        'vision_proj.gate.weight', *(f'vision_proj.experts.{e}.{i}.{p}'
                                     for e in range(4) for i in (0, 2)
                                     for p in ('weight', 'bias'))}
    assert {'tokenizer_config.json', 'tokenization_internlm_xcomposer2.py',
            'generation_config.json', 'configuration_ixc2.py',
            'modeling_ixc2.py'} <= set(os.listdir(release))


def test_lora_is_merged_exactly_and_the_rest_is_the_base(sft):
    from safetensors.torch import load_file
    merged, base = ixc2_state(sft['release']), ixc2_state(sft['tiny'] /
                                                          'ixc2')
    adapter = load_file(str(sft['hf'] / 'llm_adapter' /
                            'adapter_model.safetensors'))
    folded = set()
    for key in base:
        if not any(key.endswith(f'.{t}.weight') for t in TARGETS):
            continue
        stem = 'base_model.model.' + key[:-len('.weight')]
        if stem + '.lora_A.weight' not in adapter:
            continue
        a, b = adapter[stem + '.lora_A.weight'], adapter[
            stem + '.lora_B.weight']
        assert torch.equal(merged[key], base[key] + (b @ a) * (16 / 16)), key
        assert not torch.equal(merged[key], base[key])
        folded.add(key)
    assert len(folded) == 2 * len(TARGETS)  # 2 layers x 5 linears
    for key, value in base.items():  # Partial LoRA, norms, ViT, output
        if key not in folded and not key.startswith('vision_proj.'):
            assert torch.equal(merged[key], value), key
    connector = ixc2_state(sft['hf'] / 'vision_proj')
    for key, value in connector.items():
        if key != 'num_selected':
            assert torch.equal(merged['vision_proj.' + key], value), key


def test_peft_loads_the_adapter_and_merges_the_same(sft):
    from peft import PeftModel

    from xtuner_chartmoe.families.ixc2 import load_ixc2
    base = load_ixc2(str(sft['tiny'] / 'ixc2'), tokenizer=False).model
    peft = PeftModel.from_pretrained(base, str(sft['hf'] / 'llm_adapter'))
    state = peft.merge_and_unload().state_dict()
    merged = ixc2_state(sft['release'])
    for key in merged:
        if key.startswith('model.'):
            assert torch.equal(state[key], merged[key]), key


def test_remote_code_loads_without_the_package_with_our_logits(sft, tmp_path):
    """AutoModel / AutoModelForCausalLM with trust_remote_code, in a process
    where no module of xtuner_chartmoe can be imported (beyond what the
    start-up file loaded), give the logits of our loader and of the trained
    model (LoRA folded by PEFT)."""
    from xtuner_chartmoe.families.ixc2 import load_ixc2
    release = str(sft['release'])
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 112, 112)
    ids = torch.tensor([[1, 92543, 300, 301, 302, 92542]])
    torch.save({'pixels': pixels, 'ids': ids}, tmp_path / 'inputs.pt')
    script = (
        'import sys, torch\n'
        'before = {m for m in sys.modules if m.startswith("xtuner_chartmoe")}'
        '\n'
        'class Block:  # any new import of the package fails\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] == "xtuner_chartmoe":\n'
        '            raise ImportError(f"blocked: {name}")\n'
        'sys.meta_path.insert(0, Block())\n'
        'from transformers import AutoModel, AutoModelForCausalLM\n'
        f'inputs = torch.load({str(tmp_path / "inputs.pt")!r})\n'
        'out = {}\n'
        'for name, auto in (("model", AutoModel), ("lm", '
        'AutoModelForCausalLM)):\n'
        f'    m = auto.from_pretrained({release!r}, trust_remote_code=True)\n'
        '    assert type(m).__module__.startswith("transformers_modules.")\n'
        '    with torch.no_grad():\n'
        '        image = m.encode_images(inputs["pixels"])\n'
        '        ids = inputs["ids"]\n'
        '        e = torch.cat([m.embed_tokens(ids[:, :1]), image, '
        'm.embed_tokens(ids[:, 1:])], 1)\n'
        '        mask = torch.zeros(e.shape[:2], dtype=torch.bool)\n'
        '        mask[:, 1:1 + image.shape[1]] = True\n'
        '        out[name] = m(inputs_embeds=e, im_mask=mask).logits\n'
        'assert before == {m for m in sys.modules '
        'if m.startswith("xtuner_chartmoe")}\n'
        f'torch.save(out, {str(tmp_path / "remote.pt")!r})\n')
    # the start-up file's environment fixes (torchvision here) stay on
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / 'modules'))
    result = subprocess.run([sys.executable, '-c', script], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / 'remote.pt')
    ours = chartmoe_layout_logits(load_ixc2(release, tokenizer=False).model,
                                  pixels, ids)
    trained = chartmoe_layout_logits(trained_model(sft).merged_ixc2(),
                                     pixels, ids)
    assert torch.equal(remote['model'], ours)
    assert torch.equal(remote['lm'], ours)
    torch.testing.assert_close(trained, ours, rtol=0, atol=1e-5)


def test_huggingface_save_format_is_the_merged_release(sft, tmp_path):
    """pth_to_hf --save-format huggingface: both steps at once, the same
    folder as pth_to_hf + merge; a format without a place for IXC2 is
    refused in one line."""
    model = trained_model(sft)
    cfg = Config.fromfile(SFT)
    cfg.model.llm.source = str(sft['tiny'] / 'ixc2')
    model.to_hf(cfg, str(tmp_path / 'release'), fp32=True,
                save_format='huggingface')
    assert sorted(os.listdir(tmp_path / 'release')) == sorted(
        os.listdir(sft['release']))
    ours, merged = ixc2_state(tmp_path / 'release'), ixc2_state(
        sft['release'])
    assert ours.keys() == merged.keys()
    assert all(torch.equal(ours[k], merged[k]) for k in ours)
    assert os.listdir(tmp_path) == ['release']  # no staging left behind
    with pytest.raises(NotImplementedError, match="save_format='official'"):
        model.to_hf(cfg, str(tmp_path / 'official'), save_format='official')


def _zip_members(path):
    """A torch.save file's members but its random serialization id."""
    with zipfile.ZipFile(path) as z:
        return {n.split('/', 1)[1]: z.read(n) for n in z.namelist()
                if not n.endswith('serialization_id')}


def test_mlp_moe_export_import_round_trip(sft, tmp_path):
    from xtuner_chartmoe.commands.build_moe_connector import main
    first, second = tmp_path / 'first.pth', tmp_path / 'second.pth'
    main(['export', str(sft['release']), '--checkpoint', str(first)])
    main(['import', str(tmp_path / 'moe'), '--checkpoint', str(first)])
    main(['export', str(tmp_path / 'moe'), '--checkpoint', str(second)])
    assert _zip_members(first) == _zip_members(second)
    state = torch.load(first)
    assert state.pop('num_selected') == 2
    release = ixc2_state(sft['release'])
    assert state.keys() == {k[len('vision_proj.'):] for k in release
                            if k.startswith('vision_proj.')}
    for key, value in state.items():
        assert torch.equal(value, release['vision_proj.' + key]), key
    main(['export', str(sft['hf']), '--checkpoint', str(tmp_path / 'h.pth')])
    assert _zip_members(tmp_path / 'h.pth') == _zip_members(first)


def test_align_checkpoint_gives_a_dense_release_and_diverse_experts(
        sft, tmp_path):
    """An align model (vision_proj trained, no LoRA): pth_to_hf writes
    ChartMoE's mm_mlp.bin, the merge a dense IXC2 release; build-moe
    diverse takes the base release, that output, its mm_mlp.bin and a
    training checkpoint, and writes mlp_moe.pth on request."""
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.commands.build_moe_connector import main
    from xtuner_chartmoe.families.ixc2 import load_ixc2
    from xtuner_chartmoe.model import connector_to_reference, load_connector
    from xtuner_chartmoe.release.ixc2_release import merge_ixc2_release
    cfg = Config.fromfile(ALIGN)
    cfg.model.llm.source = str(sft['tiny'] / 'ixc2')
    model = BUILDER.build(cfg.model)
    with torch.no_grad():
        for param in model.ixc2.vision_proj.parameters():
            param.add_(0.01)
    model.to_hf(cfg, str(tmp_path / 'hf'))
    assert sorted(os.listdir(tmp_path / 'hf')) == ['chartmoe_ixc2_hf.json',
                                                   'mm_mlp.bin']
    aligned = torch.load(tmp_path / 'hf' / 'mm_mlp.bin')
    assert sorted(aligned) == [f'vision_proj.{i}.{p}' for i in (0, 2)
                               for p in ('bias', 'weight')]
    merge_ixc2_release(str(tmp_path / 'hf'), str(tmp_path / 'release'))
    config = json.loads((tmp_path / 'release' / 'config.json').read_text())
    assert 'num_experts' not in config and config['torch_dtype'] == \
        'bfloat16'
    dense = load_ixc2(str(tmp_path / 'release'), tokenizer=False).model
    for key, value in aligned.items():
        assert torch.equal(dense.state_dict()[key],
                           value.to(torch.bfloat16)), key
    torch.save(model.state_dict(), tmp_path / 'iter_1.pth')
    base = str(sft['tiny'] / 'ixc2')
    main(['diverse', str(tmp_path / 'moe'), '--projectors',
          f'general={base}', f'table={tmp_path / "hf"}',
          f'json={tmp_path / "hf" / "mm_mlp.bin"}',
          f'code={tmp_path / "iter_1.pth"}', '--mlp-moe',
          str(tmp_path / 'mlp_moe.pth')])
    moe = load_connector(str(tmp_path / 'moe'))
    general = load_ixc2(base, tokenizer=False).model.vision_proj
    for expert, source in zip(moe.experts, (general.state_dict(), *[{
            k[len('vision_proj.'):]: v for k, v in aligned.items()}] * 3)):
        for key, value in expert.state_dict().items():
            assert torch.equal(value, source[key]), key
    written = torch.load(tmp_path / 'mlp_moe.pth')
    reference = connector_to_reference(moe)
    assert written.keys() == reference.keys()
    assert all(torch.equal(written[k], reference[k]) for k in written
               if k != 'num_selected')


def test_release_answers_through_load_chat_model(sft):
    from xtuner_chartmoe.families import load_chat_model
    chat = load_chat_model(str(sft['release']))
    assert chat.family == 'ixc2'
    assert chat.expert_names == ['general', 'table', 'json', 'code']
    image = sft['tiny'] / 'data' / 'charts' / '000000.png'
    replies, routing = chat.answer([image], ['What is the highest value?'],
                                   max_new_tokens=4, return_routing=True)
    assert len(replies) == 1 and isinstance(replies[0], str)
    assert routing.experts.shape[:2] == (1, 64)  # 8 x 8 tokens at 112 px


def test_merge_names_what_is_missing(sft, tmp_path):
    from xtuner_chartmoe.release.ixc2_release import merge_ixc2_release
    manifest = json.loads((sft['hf'] / 'chartmoe_ixc2_hf.json').read_text())
    (tmp_path / 'chartmoe_ixc2_hf.json').write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match='vision_proj missing; '
                       '.*chartmoe_ixc2_hf.json names it'):
        merge_ixc2_release(str(tmp_path), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()
