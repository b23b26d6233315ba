"""ChartQA metric, PoT answer extraction, ChartQA's table and protocols on
the benchmark seam, and routing statistics (the sandbox itself:
test_sandbox.py; the seam's formats, cache and errors: test_eval_seam.py)."""
import json
import math

import pytest
import torch

from PIL import Image

from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
from xtuner_chartmoe.evaluation.benchmarks.runner import run
from xtuner_chartmoe.evaluation.metrics import (extract_program,
                                                normalise_pot_output,
                                                relaxed_correct, to_number)
from xtuner_chartmoe.evaluation.routing_stats import RoutingStats


@pytest.mark.parametrize('prediction,label,tol,expected', [
    ('1,234', '1234', 0.05, True),
    ('1,300', '1234', 0.05, False),
    ('1,300', '1234', 0.1, True),
    ('45%', '45', 0.05, True),
    ('44.9%', '45%', 0.05, True),
    ('-3.1', '-3', 0.05, True),
    ('+3', '-3', 0.2, False),
    ('$12', '12.5', 0.05, True),
    ('0', '0', 0.05, True),
    ('0.01', '0', 0.2, False),
    ('yes', 'Yes', 0.05, True),
    ('No', 'Yes', 0.05, False),
    ('South Korea', 'south korea', 0.05, True),
    ('Korea', 'South Korea', 0.05, False),
    ('', '', 0.05, False),        # the reference counts '' as right
    ('', 'Yes', 0.05, False),
    ('  ', '12', 0.2, False),
    ('7', ['3', '7.2'], 0.05, True),
    ('blue', ['red', 'Blue'], 0.05, True),
    ('12', 'twelve', 0.05, False),
])
def test_relaxed_accuracy(prediction, label, tol, expected):
    assert relaxed_correct(prediction, label, tol) is expected


def test_to_number():
    assert to_number(' -1,000.5 ') == -1000.5
    assert to_number('1e3') == 1000.0
    assert to_number('12 apples') is None and to_number('') is None


def test_program_extraction_and_output_normalisation():
    reply = 'Here:\n```python\nx = 2\nprint(x > 1)\n```\nDone.'
    assert extract_program(reply) == 'x = 2\nprint(x > 1)\n'
    assert extract_program('print(3)') == 'print(3)'
    assert normalise_pot_output('debug\nTrue\n') == 'Yes'
    assert normalise_pot_output('False') == 'No'
    assert normalise_pot_output('') == ''


class ScriptedChat:
    """Answers from a table (the question is what follows the prompt's last
    full stop); can be told to fail after some calls."""

    def __init__(self, answers, fail_after=None):
        self.answers, self.fail_after, self.asked = answers, fail_after, []

    def answer(self, images, questions, max_new_tokens=500):
        if self.fail_after is not None and len(self.asked) >= self.fail_after:
            raise RuntimeError('interrupted')
        self.asked.append(questions)
        return [self.answers[q.rsplit('.', 1)[-1]] for q in questions]


def chartqa_splits(tmp_path, **splits):
    """``test_<split>.json`` files of ChartQA entries on one chart in
    ``png/`` (ChartQA's layout); returns their paths."""
    (tmp_path / 'png').mkdir()
    Image.new('RGB', (8, 8)).save(tmp_path / 'png' / 'c.png')
    for split, entries in splits.items():
        (tmp_path / f'test_{split}.json').write_text(json.dumps(entries))
    return [str(tmp_path / f'test_{split}.json') for split in splits]


def test_chartqa_table_resumed_after_an_interruption(tmp_path):
    entries = [{'imgname': 'c.png', 'query': f'Q{i}', 'label': str(i * 10)}
               for i in range(6)]
    files = chartqa_splits(tmp_path, human=entries, augmented=entries[:4])
    answers = {'Q0': '0', 'Q1': '10', 'Q2': '21.5', 'Q3': 'x', 'Q4': '',
               'Q5': 'nope'}
    chartqa, out = get_benchmark('chartqa'), str(tmp_path / 'out')
    with pytest.raises(RuntimeError, match='interrupted'):
        run(chartqa, ScriptedChat(answers, fail_after=2), files, out,
            modes=['short'], batch_size=2)
    # Q3 ('x') is cached and must be kept; Q4 and Q5 are asked again
    answers.update({'Q3': '30', 'Q4': '40'})
    chat = ScriptedChat(answers)
    results, text = run(chartqa, chat, files, out, modes=['short'],
                        batch_size=2)
    assert [len(batch) for batch in chat.asked] == [2, 2, 2]  # 2 + 4
    table = results['scores']['ours']['short']
    assert table['Human']['0.05'] == pytest.approx(100 * 3 / 6)  # 0, 10, 40
    assert table['Human']['0.1'] == pytest.approx(100 * 4 / 6)   # + 21.5
    assert table['Augmented']['0.05'] == pytest.approx(100 * 3 / 4)
    assert table['Averaged']['0.05'] == pytest.approx((50 + 75) / 2)
    assert list(table) == ['Human', 'Augmented', 'Averaged']
    saved = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert saved == results
    assert 'Averaged' in (tmp_path / 'out' / 'results.txt').read_text()


def test_chartmoe_protocol_side_by_side_with_ours(tmp_path):
    """ours + chartmoe-pot1: one generation where the prompts agree, each
    protocol's scorer on the same replies; they differ where the reference
    scorer differs (empty answer, substring, sign)."""
    files = chartqa_splits(tmp_path, human=[
        {'imgname': 'c.png', 'query': 'Q1?', 'label': 'South Korea'},
        {'imgname': 'c.png', 'query': 'Q2?', 'label': '12'},
        {'imgname': 'c.png', 'query': 'Q3?', 'label': '-3'},
        {'imgname': 'c.png', 'query': 'Q4?', 'label': 'Yes'}])
    chat = ScriptedChat({'Q1?': 'Korea', 'Q2?': '', 'Q3?': '3',
                         'Q4?': 'Yes'})
    results, text = run(get_benchmark('chartqa'), chat, files,
                        str(tmp_path / 'out'), modes=['short'],
                        protocols=['ours', 'chartmoe-pot1'])
    assert chat.asked == [[
        'Answer the question using a single word or phrase.Q1?',
        'Answer the question using a single word or phrase.Q2?',
        'Answer the question using a single word or phrase.Q3?',
        'Answer the question using a single word or phrase.Q4?']]  # once
    scores = results['scores']
    assert scores['ours']['short']['Human']['0.05'] == pytest.approx(25.0)
    assert scores['chartmoe-pot1']['short']['Human']['0.05'] == (
        pytest.approx(100.0))  # substring, '' and |-3| = 3
    assert 'chartmoe-pot1 protocol' in text
    rows = [json.loads(line) for line in (
        tmp_path / 'out' / 'answers_human_short_chartmoe-pot1.jsonl'
    ).read_text().splitlines()]
    assert [r['correct']['0.05'] for r in rows] == [True] * 4


def test_chartmoe_protocol_pot_prompts_and_answers():
    from xtuner_chartmoe.evaluation.benchmarks.chartqa import (
        OURS, chartmoe_protocol)
    from xtuner_chartmoe.evaluation.benchmarks.runner import pot_answers
    assert chartmoe_protocol(0).prompt('pot', 'Q?') == (
        'Please give the program of thought.Q?')
    assert chartmoe_protocol(1).prompt('pot', 'Q?') == OURS.prompt('pot', 'Q?')
    replies = ['```python\nprint(3 > 2)\n```', 'print(1/0)']
    answers = [a for a, _ in pot_answers(replies, chartmoe_protocol(0), 1)]
    assert answers == ['Yes', 'error running...']
    assert [a for a, _ in pot_answers(replies, OURS, 1)] == ['Yes', '']


def test_routing_statistics():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0],
                          [0.25, 0.25, 0.25, 0.25]])
    chosen = torch.tensor([[0, 1], [1, 2], [3, 2]])
    stats = RoutingStats(4, ['g', 't', 'j', 'c']).update(probs, chosen)
    result = stats.result()
    assert result['tokens'] == 3
    assert result['top1_counts'] == [1, 1, 0, 1]
    assert result['load'] == pytest.approx([1 / 6, 2 / 6, 2 / 6, 1 / 6])
    assert result['margin'] == pytest.approx((0.5 + 0.3 + 0.0) / 3)
    expected_entropy = -sum(p * math.log(p) for row in probs.tolist()
                            for p in row if p > 0) / 3
    assert result['entropy'] == pytest.approx(expected_entropy, rel=1e-5)
