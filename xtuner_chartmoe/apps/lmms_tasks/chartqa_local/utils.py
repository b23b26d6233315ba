"""chartqa_local: ChartQA-format files scored by lmms-eval's ChartQA metric
(``lmms_eval.tasks.chartqa.utils``), each sample's MoE routing logged."""
import os

from PIL import Image

from lmms_eval.tasks.chartqa.utils import chartqa_process_results


def _process(dataset, split):
    def convert(doc):
        label = doc['label']
        return {'question': doc['query'],
                'answer': str(label[0] if isinstance(label, list) else label),
                'type': f'{split}_test', 'imgname': doc['imgname']}
    return dataset.map(convert, remove_columns=dataset.column_names)


def process_human_docs(dataset):
    return _process(dataset, 'human')


def process_augmented_docs(dataset):
    return _process(dataset, 'augmented')


def doc_to_visual(doc):
    for path in (os.path.join('test', 'png', doc['imgname']), doc['imgname']):
        if os.path.isfile(path):
            return [Image.open(path).convert('RGB')]
    raise FileNotFoundError(f"chart {doc['imgname']} not found in test/png/ "
                            'or at that path (run lmms-eval in the data root)')


def doc_to_text(doc, lmms_eval_specific_kwargs):
    kwargs = lmms_eval_specific_kwargs or {}
    return (f"{kwargs.get('pre_prompt', '')}{doc['question']}"
            f"{kwargs.get('post_prompt', '')}")


def process_results(doc, results):
    """lmms-eval's ChartQA scores, and the routing the reply carries (a
    ``xtuner_chartmoe.apps.lmms.RoutedReply``; None where it carries none)."""
    scores = chartqa_process_results(doc, results)
    scores['routing'] = getattr(results[0], 'routing', None)
    return scores


def mean_router_entropy(items):
    """Aggregate of the ``routing`` metric: mean router entropy over the
    samples (the per-sample loads and top-1 counts are in the samples)."""
    values = [item['router_entropy'] for item in items if item]
    return sum(values) / len(values) if values else float('nan')
