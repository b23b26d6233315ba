"""XTuner dataset map-fns for chart data (use as ``dataset_map_fn``).

Each maps one raw record to XTuner's ``{'conversation': [{'input', 'output'}],
'image': ...}``, the image as the record holds it (a path, or the image
embedded in a hub parquet file, which ``ChartLLaVADataset`` opens); the
image token is ``<image>`` at the start of the first input, as XTuner's
``llava_map_fn`` produces. Prompts follow the ChartMoE evaluation (its
``eval_ChartQA.py``): short answers are asked with ``'Answer the question
using a single word or phrase.'``, program-of-thought answers with
``'Please give the program of thought in python code. ...'``.
"""
from xtuner.utils import DEFAULT_IMAGE_TOKEN

from ..prompts import POT_PROMPT, SHORT_ANSWER_PROMPT

REFERENCE_IMAGE_TOKEN = '<ImageHere>'
_ROLES = {'user': 'input', 'human': 'input', 'assistant': 'output',
          'gpt': 'output'}


def _with_image(text):
    return f'{DEFAULT_IMAGE_TOKEN}\n{text.strip()}'


def chartmoe_map_fn(example):
    """ChartMoE reference format: ``image`` (a list with one path),
    ``conversations`` of ``{'from': 'user'|'assistant', 'value'}`` with
    ``<ImageHere>`` in the user text."""
    images = example['image']
    if isinstance(images, list):
        if len(images) != 1:
            raise ValueError(f'expected one image, got {len(images)}')
        images = images[0]
    conversation, pending = [], None
    for message in example['conversations']:
        role = _ROLES[message['from']]
        text = message['value']
        if role == 'input':
            pending = text.replace(REFERENCE_IMAGE_TOKEN, '').strip()
            if not conversation:
                pending = _with_image(pending)
        elif pending is not None:
            conversation.append({'input': pending, 'output': text})
            pending = None
    return {'conversation': conversation, 'image': images}


def _chartqa_fields(example):
    """``(image, question, answer)`` of a ChartQA record in any of the
    formats it is downloaded in (ChartQA, Masry et al., Findings of ACL
    2022, arXiv 2203.10244; https://github.com/vis-nlp/ChartQA):

    - the GitHub JSON (``ChartQA Dataset/{train,val,test}/*.json``):
      ``imgname`` (a file of the split's ``png/`` folder), ``query``,
      ``label`` (a string);
    - ``HuggingFaceM4/ChartQA`` (hub parquet, its dataset card at
      https://huggingface.co/datasets/HuggingFaceM4/ChartQA): ``image`` (the
      ``datasets`` Image feature, embedded), ``query``, ``label`` (a list of
      strings; the first is taken), ``human_or_machine`` (0 human, 1
      machine; not needed here);
    - ``lmms-lab/ChartQA`` (hub parquet, test split only; its dataset card
      at https://huggingface.co/datasets/lmms-lab/ChartQA and lmms-eval's
      ``tasks/chartqa/utils.py``): ``type`` (``human_test`` / ``augmented_test``),
      ``question``, ``answer``, ``image`` (embedded).
    """
    if 'query' in example and 'label' in example:
        question, answer = example['query'], example['label']
    elif 'question' in example and 'answer' in example:
        question, answer = example['question'], example['answer']
    else:
        raise ValueError(
            f'not a ChartQA record: fields {sorted(example)}; expected '
            'imgname|image, query, label or image, question, answer')
    if isinstance(answer, list):  # HuggingFaceM4/ChartQA: a list of labels
        answer = answer[0]
    return _chartqa_image(example), question, str(answer)


def _chartqa_image(example):
    """The image of a ChartQA record: ``imgname`` (GitHub JSON) or
    ``image`` (hub parquet), passed on as is (a path or embedded)."""
    return example['imgname'] if 'imgname' in example else example['image']


def chartqa_map_fn(example):
    """A ChartQA record (any format of :func:`_chartqa_fields`): the short
    answer prompt, the first label as the answer."""
    image, question, answer = _chartqa_fields(example)
    return {'conversation': [{
        'input': _with_image(SHORT_ANSWER_PROMPT + question),
        'output': answer}], 'image': image}


def chartqa_pot_map_fn(example):
    """ChartQA-format record with a ``pot`` program: PoT prompt, the program
    as the answer (numeric questions of the ChartMoE SFT mix)."""
    return {'conversation': [{
        'input': _with_image(POT_PROMPT + example['query']),
        'output': example['pot']}], 'image': _chartqa_image(example)}


def chartgemma_map_fn(example):
    """ChartGemma (Masry et al. 2024, arXiv 2407.04172; its dataset card at
    https://huggingface.co/datasets/ahmed-masry/ChartGemma, shards
    ``data/train-*.parquet``): ``image`` (the
    chart's encoded bytes, a ``binary`` column, not the Image feature; or a
    path in a JSON copy), ``input`` (the instruction), ``output`` (the
    answer). The instruction is used as is."""
    return {'conversation': [{'input': _with_image(example['input']),
                              'output': example['output']}],
            'image': example['image']}


def mmc_instruct_map_fn(example):
    """MMC-Instruct (``image_id``, ``question``, ``answer``; the question may
    carry ``<image>``): the instruction as is, the image token in front."""
    question = example['question'].replace(DEFAULT_IMAGE_TOKEN, '')
    return {'conversation': [{'input': _with_image(question),
                              'output': example['answer']}],
            'image': example['image_id']}
