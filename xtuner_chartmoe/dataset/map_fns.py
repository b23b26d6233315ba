"""XTuner dataset map-fns for chart data (use as ``dataset_map_fn``).

Each maps one raw record to XTuner's ``{'conversation': [{'input', 'output'}],
'image': str}``; the image token is ``<image>`` at the start of the first
input, as XTuner's ``llava_map_fn`` produces. Prompts follow the ChartMoE
evaluation (its ``eval_ChartQA.py``): short answers are asked with
``'Answer the question using a single word or phrase.'``, program-of-thought
answers with ``'Please give the program of thought in python code. ...'``.
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


def chartqa_map_fn(example):
    """ChartQA (``imgname``, ``query``, ``label``): short answer."""
    label = example['label']
    if isinstance(label, list):  # some splits hold a list of labels
        label = label[0]
    return {'conversation': [{
        'input': _with_image(SHORT_ANSWER_PROMPT + example['query']),
        'output': str(label)}], 'image': example['imgname']}


def chartqa_pot_map_fn(example):
    """ChartQA-format record with a ``pot`` program: PoT prompt, the program
    as the answer (numeric questions of the ChartMoE SFT mix)."""
    return {'conversation': [{
        'input': _with_image(POT_PROMPT + example['query']),
        'output': example['pot']}], 'image': example['imgname']}


def chartgemma_map_fn(example):
    """ChartGemma (``image``, ``input``, ``output``): instruction as is."""
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
