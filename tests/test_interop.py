"""What ChartMoE and LibMoE users bring: ChartMoE's own connector file
(import / export, equal forward), checked checkpoint loads everywhere, the
chart-knowledge stage, and the change of routing between checkpoints."""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel

from conftest import REPO, run_tool
from xtuner_chartmoe.evaluation.routing_stats import RoutingChange
from xtuner_chartmoe.model import (MoEProjectorConfig, MoEProjectorModel,
                                   load_checkpoint, load_connector)

DV, DL = 16, 24
BUILD = osp.join(REPO, 'tools', 'build_moe_connector.py')


class ReferenceMLPMoE(nn.Module):
    """The reference connector (ChartMoE's ``mlp_moe.py``) as its paper and
    code describe it: a bias-free linear gate, softmax in fp32 cast back to
    the input dtype, top-k renormalised, a per-sample x per-expert loop."""

    def __init__(self, num_experts, num_selected, mm_channels, channels):
        super().__init__()
        self.num_selected, self.channels = num_selected, channels
        self.gate = nn.Linear(mm_channels, num_experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(mm_channels, channels), nn.GELU(),
                          nn.Linear(channels, channels))
            for _ in range(num_experts))

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1, dtype=torch.float).to(x.dtype)
        weights, chosen = torch.topk(probs, self.num_selected)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros(*x.shape[:2], self.channels, dtype=x.dtype)
        for b in range(x.shape[0]):
            for i, expert in enumerate(self.experts):
                token, nth = torch.where(chosen[b] == i)
                out[b][token] += weights[b][token, nth, None] * expert(
                    x[b][token])
        return out


def reference_file(tmp_path, num_selected=2, seed=0):
    """``mlp_moe.pth`` as ``moe_construction.py`` saves it."""
    torch.manual_seed(seed)
    reference = ReferenceMLPMoE(4, num_selected, DV, DL).eval()
    state = reference.state_dict()
    state['num_selected'] = num_selected  # a plain int, as the reference
    path = tmp_path / 'mlp_moe.pth'
    torch.save(state, path)
    return reference, str(path)


def test_import_gives_a_connector_with_the_reference_forward(tmp_path):
    reference, path = reference_file(tmp_path, num_selected=2)
    run_tool([BUILD, 'import', 'moe', '--checkpoint', path], cwd=tmp_path)
    moe = AutoModel.from_pretrained(tmp_path / 'moe',
                                    trust_remote_code=True).eval()
    assert moe.config.expert_names == ['general', 'table', 'json', 'code']
    assert moe.top_k == 2
    x = torch.randn(3, 7, DV)
    with torch.no_grad():
        torch.testing.assert_close(moe(x), reference(x), atol=1e-6, rtol=0)


def test_export_orders_experts_by_role_and_loads_in_the_reference(tmp_path):
    torch.manual_seed(1)
    moe = MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=DV, llm_hidden_size=DL, num_selected=1,
        expert_names=['code', 'general', 'json', 'table'])).eval()
    moe.save_pretrained(tmp_path / 'ours')
    run_tool([BUILD, 'export', 'ours', '--checkpoint', 'mlp_moe.pth'],
             cwd=tmp_path)
    state = torch.load(tmp_path / 'mlp_moe.pth', weights_only=True)
    assert state.pop('num_selected') == 1
    assert isinstance(state, dict) and len(state) == 17
    reference = ReferenceMLPMoE(4, 1, DV, DL).eval()
    reference.load_state_dict(state)  # strict: every key, every shape
    roles = ['general', 'table', 'json', 'code']
    for i, role in enumerate(roles):  # general first, whatever its position
        ours = moe.experts[moe.config.expert_names.index(role)]
        assert torch.equal(reference.experts[i][0].weight, ours[0].weight)
    x = torch.randn(2, 5, DV)
    with torch.no_grad():
        torch.testing.assert_close(moe(x), reference(x), atol=1e-6, rtol=0)


def test_build_tool_fails_cleanly_and_writes_nothing(tmp_path):
    torch.save({'model.0.weight': torch.zeros(2, 2)}, tmp_path / 'other.pth')
    result = run_tool([BUILD, 'import', 'moe', '--checkpoint', 'other.pth'],
                      cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "other.pth: not a ChartMoE connector file" in result.stderr
    assert "model.0.weight" in result.stderr
    assert not (tmp_path / 'moe').exists()
    result = run_tool([BUILD, 'diverse', 'moe', '--projectors', 'general=a',
                       'b'], cwd=tmp_path, check=False)
    assert result.returncode == 1 and 'ROLE=PATH, or none' in result.stderr


def test_connector_folder_must_match_one_to_one(tmp_path):
    moe = MoEProjectorModel(MoEProjectorConfig(visual_hidden_size=DV,
                                               llm_hidden_size=DL))
    moe.save_pretrained(tmp_path / 'ok')
    assert load_connector(str(tmp_path / 'ok')).config.num_experts == 4
    from safetensors.torch import load_file, save_file
    state = load_file(tmp_path / 'ok' / 'model.safetensors')
    del state['experts.3.2.bias']
    state['extra.weight'] = torch.zeros(1)
    save_file(state, tmp_path / 'ok' / 'model.safetensors')
    with pytest.raises(ValueError) as err:
        load_connector(str(tmp_path / 'ok'))
    assert 'experts.3.2.bias' in str(err.value)
    assert 'extra.weight' in str(err.value)
    assert str(tmp_path / 'ok') in str(err.value)


def test_load_checkpoint_reports_counts_and_upcycles():
    target = nn.ModuleDict({'projector': MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=DV, llm_hidden_size=DL))})
    dense = {f'projector.model.{i}.{p}': torch.randn(DL, DV if i == 0 else DL)
             if p == 'weight' else torch.randn(DL)
             for i in (0, 2) for p in ('weight', 'bias')}
    report = load_checkpoint(target, dense, 'dense.pth')
    assert (report.used, report.total, report.filled) == (4, 4, 16)
    assert report.fresh == ['projector.gate.weight']
    assert 'loaded 4 of 4 checkpoint tensors into 16 model tensors' in \
        report.summary()
    assert torch.equal(target.projector.experts[3][2].bias,
                       dense['projector.model.2.bias'])
    with pytest.raises(ValueError, match='no tensor of the checkpoint'):
        load_checkpoint(target, {'gate.weight': torch.zeros(4, DV)},
                        'mlp_moe.pth')


@pytest.fixture(scope='module')
def tiny(workspace):
    root = workspace / 'work_dirs' / 'tiny'
    return {name: str(root / name) for name in ('llm', 'clip',
                                                'general_projector')}


def build_model(tiny, **kwargs):
    from transformers import AutoModelForCausalLM, CLIPVisionModel

    from xtuner_chartmoe.model import ChartMoEModel
    return ChartMoEModel(
        llm=AutoModelForCausalLM.from_pretrained(tiny['llm']),
        visual_encoder=CLIPVisionModel.from_pretrained(tiny['clip']),
        freeze_llm=True, freeze_visual_encoder=True,
        use_activation_checkpointing=False, **kwargs)


def test_reference_file_in_a_config(tiny, tmp_path):
    """``pretrained_pth=mlp_moe.pth`` matches nothing and stops, naming the
    file and the keys; ``moe_projector=dict(pretrained=mlp_moe.pth)``
    imports it."""
    torch.manual_seed(0)
    reference = ReferenceMLPMoE(4, 2, 64, 128)
    state = reference.state_dict()
    state['num_selected'] = 2
    torch.save(state, tmp_path / 'mlp_moe.pth')
    with pytest.raises(ValueError) as err:
        build_model(tiny, moe_projector=dict(
            mode='upcycle', expert_projectors=[tiny['general_projector']]),
            pretrained_pth=str(tmp_path / 'mlp_moe.pth'))
    assert str(tmp_path / 'mlp_moe.pth') in str(err.value)
    assert 'gate.weight' in str(err.value)
    model = build_model(tiny, moe_projector=dict(
        pretrained=str(tmp_path / 'mlp_moe.pth')))
    assert torch.equal(model.projector.gate.weight, reference.gate.weight)


def test_routing_change_statistics():
    change = RoutingChange(3, ['g', 't', 'j'])
    a = torch.tensor([[0, 1], [0, 2], [1, 0], [2, 1]])
    b = torch.tensor([[0, 2], [1, 0], [1, 0], [2, 1]])
    result = change.update(a, b).result()
    assert result['tokens'] == 4
    assert result['top1_changed'] == pytest.approx(1 / 4)
    assert result['set_changed'] == pytest.approx(2 / 4)  # rows 0 and 1
    assert result['per_expert'] == {'g': pytest.approx(0.5), 't': 0.0,
                                    'j': 0.0}
    assert result['transitions'] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match='not the same tokens'):
        change.update(a, b[:2])


def test_mmc_instruct_map_fn():
    from xtuner_chartmoe.dataset import mmc_instruct_map_fn
    mapped = mmc_instruct_map_fn({'image_id': 'c/1.png', 'question':
                                  '<image>\nWhat type of chart is shown?',
                                  'answer': 'A line chart.'})
    assert mapped == {'image': 'c/1.png', 'conversation': [{
        'input': '<image>\nWhat type of chart is shown?',
        'output': 'A line chart.'}]}


def test_knowledge_data_is_synthesized_in_mmc_format(workspace):
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    records = json.loads((data / 'knowledge_mmc.json').read_text())
    assert len(records) == 3 * 12  # 3 instructions x 12 training charts
    assert set(records[0]) == {'image_id', 'question', 'answer'}
    assert all((data / r['image_id']).is_file() for r in records)
    summary = [r for r in records if r['question'].startswith('Summarize')]
    assert all('is highest for' in r['answer'] for r in summary)


def test_knowledge_stage_trains_and_the_sft_continues_from_it(
        workspace, tiny_connector):
    name = 'chartmoe_tiny_llama_tiny_clip_lora_e3_cpu_knowledge'
    config = osp.join(REPO, 'configs', 'chartmoe', 'tiny', name + '.py')
    run_tool(['-m', 'xtuner.tools.train', config], cwd=workspace)
    work_dir = workspace / 'work_dirs' / name
    scalars = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1]
    losses = [json.loads(line)['loss'] for line in
              scalars.read_text().splitlines() if '"loss"' in line]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    from mmengine.config import Config
    from xtuner.registry import BUILDER
    sft = Config.fromfile(osp.join(
        REPO, 'configs', 'chartmoe', 'tiny',
        'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft.py'))
    sft.model.pretrained_pth = checkpoint
    import os
    cwd = os.getcwd()
    os.chdir(workspace)  # the config's paths are relative
    try:
        model = BUILDER.build(sft.model)
    finally:
        os.chdir(cwd)
    trained = torch.load(checkpoint, map_location='cpu',
                         weights_only=False)['state_dict']
    state = model.state_dict()
    assert set(trained) == set(state)  # every LoRA and connector tensor
    for key, value in trained.items():
        assert torch.equal(state[key], value), key
