"""Training / test records of one quadruple, in the formats the map-fns
read."""
import json

from ..prompts import ALIGN_PROMPTS
from .questions import knowledge_instructions


def quadruple_records(quad, image):
    """Records of one quadruple: ``{'table': [..], 'json': [..], 'code':
    [..], 'chartqa': [..], 'knowledge': [..]}``. Align records are in the
    ChartMoE reference format (``image`` list, ``<ImageHere>``,
    ``user``/``assistant``; read with ``chartmoe_map_fn``); QA entries in
    ChartQA format (``imgname``, ``query``, ``label``) plus the ``pot``
    program (``chartqa_map_fn`` / ``chartqa_pot_map_fn``); knowledge
    instructions in MMC-Instruct's format (``image_id``, ``question``,
    ``answer``; ``mmc_instruct_map_fn``)."""
    index = quad['index']
    answers = {'table': quad['table_text'],
               'json': json.dumps(quad['json'], ensure_ascii=False),
               'code': quad['code']}
    records = {kind: [{
        'id': f'{index:06d}_{kind}', 'image': [image], 'conversations': [
            {'from': 'user', 'value': f'<ImageHere>{ALIGN_PROMPTS[kind]}'},
            {'from': 'assistant', 'value': answers[kind]}]}]
        for kind in ALIGN_PROMPTS}
    records['chartqa'] = [{'imgname': image, 'query': qa['question'],
                           'label': qa['answer'], 'pot': qa['pot']}
                          for qa in quad['questions']]
    records['knowledge'] = [{'image_id': image, **qa}
                            for qa in knowledge_instructions(quad)]
    return records
