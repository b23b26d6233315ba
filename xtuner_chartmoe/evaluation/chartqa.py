"""ChartQA evaluation: batched generation, cached predictions, relaxed
accuracy with and without program of thought (PoT), under our protocol
(paper-true relaxed accuracy) or ChartMoE's own (its prompts, PoT
post-processing and scorer, ``eval_ChartQA.py``). PoT programs always run
in the sandbox."""
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from ..prompts import PROMPTS
from ..fileio import atomic_write_json, atomic_write_text
from .metrics import (TOLERANCES, accuracy_table, extract_program,
                      format_table, normalise_pot_output, relaxed_correct)
from .sandbox import require, run_programs


@dataclass(frozen=True)
class Protocol:
    """How a ChartQA answer is asked for and scored.

    ``prompt(mode, question)`` -> the text sent (the model adds its chat
    format); ``extract_program(reply)`` -> PoT code; ``pot_answer(stdout or
    None for a failed program)`` -> the answer; ``correct(answer, labels,
    tolerance)`` -> bool.
    """
    name: str
    prompt: Callable
    extract_program: Callable
    pot_answer: Callable
    correct: Callable


OURS = Protocol(
    'ours', lambda mode, question: PROMPTS[mode] + question, extract_program,
    lambda stdout: '' if stdout is None else normalise_pot_output(stdout),
    relaxed_correct)


def chartmoe_protocol(pot_idx=0):
    """ChartMoE's ``eval_ChartQA.py``: its instructions with no space before
    the question (PoT ``pot_idx`` 0, its default, or 1, the prompt of the
    reproduced checkpoint's numbers), its code extraction, True/False ->
    Yes/No, its relaxed accuracy (first number, yes/no and substring
    rules; an empty answer can count as right there)."""
    from . import chartmoe_reference as ref
    instruction = {'short': ref.SHORT_ANSWER_INSTRUCTION,
                   'pot': ref.POT_INSTRUCTIONS[pot_idx]}
    return Protocol(f'chartmoe (pot_idx {pot_idx})',
                    lambda mode, question: instruction[mode] + question,
                    ref.extract_program, ref.pot_answer, ref.relaxed_score)


def load_split(path):
    """ChartQA entries (``imgname``, ``query``, ``label``); errors name the
    file and the entry."""
    with open(path) as f:
        entries = json.load(f)
    for i, entry in enumerate(entries):
        missing = {'imgname', 'query', 'label'} - set(entry)
        if missing:
            raise ValueError(f'{path}[{i}]: missing {sorted(missing)}')
    return entries


def _read_cache(path):
    cached = {}
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a torn last line: redo it
                    continue
                cached[row['index']] = row['reply']
    return cached


def generate_replies(chat, entries, image_folder, mode, cache_file,
                     batch_size=8, max_new_tokens=500, protocol=OURS):
    """Replies for every entry, generating only those not in ``cache_file``
    (JSON lines ``{index, reply}``, appended and flushed per batch)."""
    cached = _read_cache(cache_file)
    todo = [i for i in range(len(entries)) if i not in cached]
    os.makedirs(osp.dirname(cache_file), exist_ok=True)
    with open(cache_file, 'a') as cache, tqdm(
            total=len(entries), initial=len(entries) - len(todo),
            desc=f'{osp.basename(cache_file)}', unit='q') as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            replies = chat.answer(
                [osp.join(image_folder, entries[i]['imgname']) for i in batch],
                [protocol.prompt(mode, entries[i]['query']) for i in batch],
                max_new_tokens=max_new_tokens)
            for i, reply in zip(batch, replies):
                cached[i] = reply
                cache.write(json.dumps({'index': i, 'reply': reply}) + '\n')
            cache.flush()
            os.fsync(cache.fileno())
            bar.update(len(batch))
    return [cached[i] for i in range(len(entries))]


def pot_answers(replies, workers=4, protocol=OURS):
    """Run the program of each PoT reply in the sandbox. Returns
    ``[(answer, ProgramResult)]``; a failing program is answered by
    ``protocol.pot_answer(None)`` (ours: empty, so wrong)."""
    results = run_programs([protocol.extract_program(r) for r in replies],
                           workers=workers)
    return [(protocol.pot_answer(r.stdout if r.ok else None), r)
            for r in results]


def score(entries, replies, mode, pot_workers=4, protocol=OURS):
    """Per-entry answers and correctness at each tolerance (PoT replies via
    :func:`pot_answers`)."""
    if mode == 'pot':
        ran = pot_answers(replies, pot_workers, protocol)
        answers = [answer for answer, _ in ran]
        errors = [result.error for _, result in ran]
    else:
        answers, errors = [r.strip() for r in replies], [''] * len(replies)
    rows = []
    for entry, reply, answer, error in zip(entries, replies, answers, errors):
        rows.append({'query': entry['query'], 'label': entry['label'],
                     'reply': reply, 'answer': answer, 'error': error,
                     'correct': {str(t): protocol.correct(answer,
                                                          entry['label'], t)
                                 for t in TOLERANCES}})
    return rows


def evaluate(chat, split_files, image_folder, out_dir, modes=('short', 'pot'),
             batch_size=8, max_new_tokens=500, pot_workers=4,
             protocols=(OURS,)):
    """Evaluate ``chat`` on ``{split_name: file}`` under each of
    ``protocols``; writes ``out_dir/results.{json,txt}``,
    ``answers_<split>_<mode>.jsonl`` and the prediction caches under
    ``out_dir/predictions`` (a protocol other than ours adds its name to
    each: ``..._chartmoe``). Returns the results ({mode: table}, or
    {protocol: {mode: table}} for several protocols) and their text. With
    ``'pot'`` in ``modes`` the PoT sandbox is checked first
    (:class:`~.sandbox.SandboxUnavailable` before any generation)."""
    if 'pot' in modes:  # fail before generating, not after
        require()
    os.makedirs(out_dir, exist_ok=True)
    splits = {split: load_split(path) for split, path in split_files.items()}
    results, texts = {}, []
    for protocol in protocols:
        suffix = '' if protocol is OURS else '_' + protocol.name.split()[0]
        results[protocol.name] = {}
        for mode in modes:
            correct = {}
            for split, entries in splits.items():
                # the same prompt as ours: the same replies, one cache
                asked = '' if protocol.prompt(mode, '?') == OURS.prompt(
                    mode, '?') else suffix
                replies = generate_replies(
                    chat, entries, image_folder, mode, osp.join(
                        out_dir, 'predictions', f'{split}_{mode}{asked}.jsonl'),
                    batch_size, max_new_tokens, protocol)
                rows = score(entries, replies, mode, pot_workers, protocol)
                atomic_write_text(
                    osp.join(out_dir, f'answers_{split}_{mode}{suffix}.jsonl'),
                    ''.join(json.dumps(r) + '\n' for r in rows))
                correct[split.capitalize()] = {
                    t: [r['correct'][str(t)] for r in rows] for t in TOLERANCES}
            table = accuracy_table(correct)
            results[protocol.name][mode] = table
            label = '' if protocol is OURS else f', {protocol.name} protocol'
            texts.append(format_table(
                table, f'ChartQA relaxed accuracy ({mode}{label}, %)'))
    if len(protocols) == 1:
        results = results[protocols[0].name]
        as_json = {mode: _table_json(table) for mode, table in results.items()}
    else:
        as_json = {name: {mode: _table_json(table)
                          for mode, table in tables.items()}
                   for name, tables in results.items()}
    text = '\n\n'.join(texts)
    atomic_write_json(osp.join(out_dir, 'results.json'), as_json)
    atomic_write_text(osp.join(out_dir, 'results.txt'), text + '\n')
    return results, text


def _table_json(table):
    return {split: {str(t): v for t, v in row.items()}
            for split, row in table.items()}
