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


class CannedChat:
    """A ChatModel stand-in: the reply for each question, and what it was
    asked."""

    def __init__(self, replies):
        self.replies, self.asked = replies, []

    def answer(self, images, questions, max_new_tokens=500):
        self.asked += questions
        return [self.replies[q.rsplit('.', 1)[-1]] for q in questions]


def test_chartmoe_protocol_side_by_side_with_ours(tmp_path):
    """--protocol both: one generation where the prompts agree, each
    protocol's scorer on the same replies; they differ where the reference
    scorer differs (empty answer, substring, sign)."""
    from xtuner_chartmoe.evaluation.chartqa import OURS, chartmoe_protocol
    split = tmp_path / 'test_human.json'
    split.write_text(json.dumps([
        {'imgname': 'a.png', 'query': 'Q1?', 'label': 'South Korea'},
        {'imgname': 'a.png', 'query': 'Q2?', 'label': '12'},
        {'imgname': 'a.png', 'query': 'Q3?', 'label': '-3'},
        {'imgname': 'a.png', 'query': 'Q4?', 'label': 'Yes'}]))
    chat = CannedChat({'Q1?': 'Korea', 'Q2?': '', 'Q3?': '3',
                       'Q4?': 'Yes'})
    results, text = evaluate(chat, {'human': str(split)}, str(tmp_path),
                             str(tmp_path / 'out'), ['short'],
                             protocols=(OURS, chartmoe_protocol(1)))
    assert chat.asked == [
        'Answer the question using a single word or phrase.Q1?',
        'Answer the question using a single word or phrase.Q2?',
        'Answer the question using a single word or phrase.Q3?',
        'Answer the question using a single word or phrase.Q4?']  # once
    ours = results['ours']['short']['Human'][0.05]
    reference = results['chartmoe (pot_idx 1)']['short']['Human'][0.05]
    assert ours == pytest.approx(25.0)  # only "Yes"
    assert reference == pytest.approx(100.0)  # substring, '' and |-3| = 3
    assert 'chartmoe (pot_idx 1) protocol' in text
    saved = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert set(saved) == {'ours', 'chartmoe (pot_idx 1)'}
    rows = [json.loads(line) for line in (
        tmp_path / 'out' / 'answers_human_short_chartmoe.jsonl'
    ).read_text().splitlines()]
    assert [r['correct']['0.05'] for r in rows] == [True] * 4


def test_chartmoe_protocol_pot_prompts_and_answers():
    from xtuner_chartmoe.evaluation.chartqa import (OURS, chartmoe_protocol,
                                                    pot_answers)
    assert chartmoe_protocol(0).prompt('pot', 'Q?') == (
        'Please give the program of thought.Q?')
    assert chartmoe_protocol(1).prompt('pot', 'Q?') == OURS.prompt('pot', 'Q?')
    replies = ['```python\nprint(3 > 2)\n```', 'print(1/0)']
    answers = [a for a, _ in pot_answers(replies, 1, chartmoe_protocol(0))]
    assert answers == ['Yes', 'error running...']
    assert [a for a, _ in pot_answers(replies, 1, OURS)] == ['Yes', '']
