"""ChartMoE as an lmms-eval model (``--model chartmoe``), and a local ChartQA
task for it.

The model registers through lmms-eval's ``lmms_eval.models`` entry-point
group (``setup.py``: ``chartmoe = xtuner_chartmoe.apps.lmms:manifest``), so once
this package is installed::

    cd work_dirs/tiny/data      # the task reads test/test_*.json here
    python -m lmms_eval --model chartmoe \\
        --model_args pretrained=../../chartmoe_tiny --batch_size 8 \\
        --tasks chartqa_local --include_path "$(python -m xtuner_chartmoe.apps.lmms)" \\
        --log_samples --output_path ../../lmms

``pretrained`` is a release folder (``chartmoe merge``), an
InternLM-XComposer2 / ChartMoE folder or hub id, or a training checkpoint with its config (``pretrained=iter_N.pth,config=CFG.py,
root=DIR``; ``root`` is where the config's relative paths start, the
directory it was trained in).
``generate_until`` answers in batches of lmms-eval's ``--batch_size`` (greedy,
``max_new_tokens`` from the task, cut at its ``until`` strings); each reply
is a :class:`RoutedReply` that carries its sample's routing (share of the
top-k slots and top-1 count per expert, mean router entropy over the visual
tokens) to the task's ``process_results``, which logs it.

The task folder (:data:`TASKS_DIR`, printed by ``python -m
xtuner_chartmoe.apps.lmms``) holds ``chartqa_local``: ChartQA-format splits
(``imgname``, ``query``, ``label``; our synthesis's ``test/test_*.json`` or
ChartQA's own) under ``test/`` of the directory lmms-eval runs in, images in
``test/png/`` or at ``imgname`` itself, scored by lmms-eval's own ChartQA
metric, with each sample's routing in the logged samples; and
``chart_benchmarks``: ``chartbench``, ``chartfc``, ``chartcheck`` (the group
of ``chartcheck_test_one`` and ``chartcheck_test_two``) and ``plotqa``, read
and scored by the benchmarks of ``chartmoe eval``
(:mod:`xtuner_chartmoe.evaluation.benchmarks`) from ``ChartBench/``,
``ChartFC/``, ``ChartCheck/`` and ``PlotQA/`` of the directory lmms-eval
runs in (the files each reads: ``lmms_tasks/chart_benchmarks/utils.py``).
MME and MMBench run through lmms-eval's own tasks (``--tasks
mme,mmbench_en_dev``).
"""
import contextlib
import os
import os.path as osp

TASKS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'lmms_tasks')


class RoutedReply(str):
    """A reply (the text, a ``str`` for lmms-eval's filters and logs) with
    ``routing``: its sample's :func:`sample_routing` dict, or None (dense
    connector). ``strip()`` keeps the routing: lmms-eval strips each reply
    (removing reasoning tags) before scoring it."""

    def __new__(cls, text, routing=None):
        reply = super().__new__(cls, text)
        reply.routing = routing
        return reply

    def strip(self, chars=None):
        return RoutedReply(super().strip(chars), self.routing)


def manifest():
    """The entry point: lmms-eval's model manifest for ``chartmoe``."""
    from lmms_eval.models.registry_v2 import ModelManifest
    return ModelManifest(model_id='chartmoe',
                         simple_class_path='xtuner_chartmoe.apps.lmms.ChartMoELmms')


def sample_routing(probs, selected, expert_names):
    """One sample's routing: ``probs [T, E]``, ``selected [T, k]`` ->
    ``{'expert_load': {name: share of slots}, 'top1_counts': {name: n},
    'router_entropy': mean entropy}``."""
    from xtuner_chartmoe.evaluation.routing_stats import RoutingStats
    stats = RoutingStats(len(expert_names), expert_names).update(
        probs, selected).result()
    return {'expert_load': dict(zip(expert_names, stats['load'])),
            'top1_counts': dict(zip(expert_names, stats['top1_counts'])),
            'router_entropy': stats['entropy']}


def _lmms_base():
    from lmms_eval.api.model import lmms
    return lmms


class ChartMoELmms(_lmms_base()):
    """lmms-eval model around a :class:`~xtuner_chartmoe.families.base.ChatModel`
    (see the module docstring). ``generate_until(requests)`` -> replies."""

    def __init__(self, pretrained, config=None, root=None, device=None,
                 batch_size=1, max_new_tokens=64, **kwargs):
        super().__init__()
        from xtuner_chartmoe.families import load_chat_model
        from xtuner_chartmoe.engine.version_guard import check
        check('lmms-eval')
        if config:
            # the config's relative paths (``./work_dirs/...``) are relative
            # to where it was trained: ``root``, not the data root
            # lmms-eval runs in
            checkpoint, config = osp.abspath(pretrained), osp.abspath(config)
            with contextlib.chdir(root or os.getcwd()):
                self.chat = load_chat_model(checkpoint, config=config,
                                            device=device)
        else:
            self.chat = load_chat_model(pretrained, device=device)
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)

    def generate_until(self, requests):
        from tqdm import tqdm
        replies = []
        for start in tqdm(range(0, len(requests), self.batch_size),
                          desc='chartmoe', disable=self.rank != 0):
            batch = [r.args for r in requests[start:start + self.batch_size]]
            replies += self._answer(batch)
        return replies

    def _answer(self, batch):
        images, questions = [], []
        for context, _, doc_to_visual, doc_id, task, split in batch:
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            images.append(visuals[0].convert('RGB'))
            questions.append(context)
        gen_kwargs = batch[0][1]
        answers, routing = self.chat.answer(
            images, questions, int(gen_kwargs.get(
                'max_new_tokens', self.max_new_tokens)), return_routing=True)
        until = gen_kwargs.get('until') or []
        for stop in [until] if isinstance(until, str) else until:
            answers = [a.split(stop)[0] for a in answers]
        if routing is None:
            return [RoutedReply(a) for a in answers]
        names = self.chat.expert_names
        return [RoutedReply(a, sample_routing(routing.probs[i].float().cpu(),
                                              routing.experts[i].cpu(), names))
                for i, a in enumerate(answers)]

    def loglikelihood(self, requests):
        raise NotImplementedError('chartmoe answers by generation only')

    def generate_until_multi_round(self, requests):
        raise NotImplementedError('chartmoe answers one round')


if __name__ == '__main__':
    print(TASKS_DIR)
