"""mmengine hooks for MoE connector training."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from xtuner_chartmoe.evaluation.routing_stats import RoutingStats
from xtuner_chartmoe.model.moe_block import SparseMoEBlock


def _unwrap(runner):
    model = runner.model
    return model.module if is_model_wrapper(model) else model


class RoutingStatsHook(Hook):
    """Logs the MoE connector's routing of each training batch (read from
    the model's ``routing_recorder``): ``load_<expert>`` (share of top-k
    slots), ``router_entropy`` and ``router_margin`` go to the runner's
    message hub, hence to the training log and the visualizer's scalars like
    the loss."""
    priority = 'NORMAL'  # before LoggerHook

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        model = _unwrap(runner)
        recorder = getattr(model, 'routing_recorder', None)
        routing = None if recorder is None else recorder.routings.get(
            'projector')
        if routing is None:
            return
        config = model.projector.config
        stats = RoutingStats(config.num_experts, config.expert_names).update(
            routing.probs, routing.experts).result()
        hub = runner.message_hub
        for name, load in zip(config.expert_names, stats['load']):
            hub.update_scalar(f'train/load_{name}', load)
        hub.update_scalar('train/router_entropy', stats['entropy'])
        hub.update_scalar('train/router_margin', stats['margin'])


class TopKScheduleHook(Hook):
    """Grow the top-k of every MoE layer (the connector and CLIP MoE layers)
    during training, as the hyper-router recipe does: ``start_k`` for the
    first ``switch_ratio`` of the iterations, then ``end_k``. The current k
    is a buffer (``num_selected``), so it is checkpointed and resumed."""

    def __init__(self, start_k=1, end_k=2, switch_ratio=0.5):
        self.start_k, self.end_k, self.switch_ratio = start_k, end_k, \
            switch_ratio

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = _unwrap(runner)
        k = self.start_k if runner.iter < self.switch_ratio * \
            runner.max_iters else self.end_k
        for layer in model.modules():
            if isinstance(layer, SparseMoEBlock):
                layer.set_top_k(k)
