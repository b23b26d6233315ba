"""mmengine hooks for MoE connector training."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from .evaluation.routing import RoutingStats


class RoutingStatsHook(Hook):
    """Logs the MoE connector's routing of each training batch:
    ``load_<expert>`` (share of top-k slots), ``router_entropy`` and
    ``router_margin`` go to the runner's message hub, hence to the training
    log and the visualizer's scalars like the loss."""
    priority = 'NORMAL'  # before LoggerHook

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        routing = getattr(model, 'last_routing', None)
        if routing is None:
            return
        config = model.projector.config
        stats = RoutingStats(config.num_experts, config.expert_names).update(
            routing.router_probs, routing.selected_experts).result()
        hub = runner.message_hub
        for name, load in zip(config.expert_names, stats['load']):
            hub.update_scalar(f'train/load_{name}', load)
        hub.update_scalar('train/router_entropy', stats['entropy'])
        hub.update_scalar('train/router_margin', stats['margin'])
