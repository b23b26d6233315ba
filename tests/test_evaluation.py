"""ChartQA metric, PoT answer extraction, the evaluator's cache/resume and
table, and routing statistics (the sandbox itself: test_sandbox.py)."""
import json
import math

import pytest
import torch

from xtuner_chartmoe.evaluation.chartqa import evaluate
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
    """Answers from a table; can be told to fail after some calls."""

    def __init__(self, answers, fail_after=None):
        self.answers, self.fail_after, self.asked = answers, fail_after, []

    def answer(self, images, questions, max_new_tokens=500):
        if self.fail_after is not None and len(self.asked) >= self.fail_after:
            raise RuntimeError('interrupted')
        self.asked.append(len(questions))
        return [self.answers[q.split('.')[-1]] for q in questions]


def test_evaluate_table_cache_and_resume(tmp_path):
    entries = [{'imgname': f'{i}.png', 'query': f'Q{i}', 'label': str(i * 10)}
               for i in range(6)]
    human, augmented = tmp_path / 'test_human.json', tmp_path / 'test_aug.json'
    human.write_text(json.dumps(entries))
    augmented.write_text(json.dumps(entries[:4]))
    answers = {'Q0': '0', 'Q1': '10', 'Q2': '21.5', 'Q3': 'x', 'Q4': '',
               'Q5': 'nope'}
    splits = {'human': str(human), 'augmented': str(augmented)}
    with pytest.raises(RuntimeError, match='interrupted'):
        evaluate(ScriptedChat(answers, fail_after=2), splits, 'imgs',
                 str(tmp_path / 'out'), modes=['short'], batch_size=2)
    cached = (tmp_path / 'out' / 'predictions' / 'human_short.jsonl'
              ).read_text().splitlines()
    assert len(cached) == 4  # two batches of two were kept
    # Q3 ('x') is cached and must be kept; Q4 and Q5 are asked again
    answers.update({'Q3': '30', 'Q4': '40'})
    chat = ScriptedChat(answers)
    results, text = evaluate(chat, splits, 'imgs', str(tmp_path / 'out'),
                             modes=['short'], batch_size=2)
    assert chat.asked == [2, 2, 2]  # human: last 2 only; augmented: 4
    table = results['short']
    assert table['Human'][0.05] == pytest.approx(100 * 3 / 6)  # 0, 10, 40
    assert table['Human'][0.1] == pytest.approx(100 * 4 / 6)   # + 21.5
    assert table['Augmented'][0.05] == pytest.approx(100 * 3 / 4)  # 0,10,30
    assert table['Averaged'][0.05] == pytest.approx((50 + 75) / 2)
    saved = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert saved['short']['Human']['0.1'] == pytest.approx(100 * 4 / 6)
    assert 'Averaged' in (tmp_path / 'out' / 'results.txt').read_text()


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
