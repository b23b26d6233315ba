"""Configuration of the ChartMoE MoE connector (HF ``PretrainedConfig``)."""
from transformers import PretrainedConfig

# ChartMoE's experts in its order (arXiv 2409.03277; IDEA-FinAI/ChartMoE
# ``chartmoe/train/moe_construction.py``): the base model's projector, then
# the table-, JSON- and code-aligned ones.
CHARTMOE_EXPERT_NAMES = ('general', 'table', 'json', 'code')


class MoEProjectorConfig(PretrainedConfig):
    """Settings of :class:`MoEProjectorModel`.

    Experts have the shape of XTuner's ``ProjectorModel`` (``depth`` Linear
    layers, ``hidden_act`` between them). ``num_selected`` is the top-k of the
    router; ``router_type`` names one of ``routers.ROUTERS`` and
    ``router_kwargs`` are passed to it. ``expert_names`` only labels experts in
    logs and plots (ChartMoE: general, table, json, code).
    """
    model_type = 'chartmoe_projector'
    _auto_class = 'AutoConfig'

    def __init__(self,
                 visual_hidden_size=1024,
                 llm_hidden_size=4096,
                 depth=2,
                 hidden_act='gelu',
                 bias=True,
                 num_experts=4,
                 num_selected=2,
                 router_type='softmax',
                 router_kwargs=None,
                 expert_names=None,
                 dispatch='slices',
                 **kwargs):
        if num_experts < 1:
            raise ValueError(f'num_experts must be >= 1, got {num_experts}')
        if not 1 <= num_selected <= num_experts:
            raise ValueError(
                f'num_selected (top-k) must be between 1 and num_experts='
                f'{num_experts}, got {num_selected}')
        if expert_names is not None and len(expert_names) != num_experts:
            raise ValueError(f'expert_names has {len(expert_names)} names for '
                             f'{num_experts} experts')
        self.visual_hidden_size = visual_hidden_size
        self.llm_hidden_size = llm_hidden_size
        self.depth = depth
        self.hidden_act = hidden_act
        self.bias = bias
        if dispatch not in ('slices', 'grouped_mm'):
            raise ValueError("dispatch must be 'slices' or 'grouped_mm', got "
                             f'{dispatch!r}')
        self.dispatch = dispatch
        self.num_experts = num_experts
        self.num_selected = num_selected
        self.router_type = router_type
        self.router_kwargs = dict(router_kwargs or {})
        self.expert_names = list(expert_names) if expert_names else [
            f'expert_{i}' for i in range(num_experts)
        ]
        super().__init__(**kwargs)
