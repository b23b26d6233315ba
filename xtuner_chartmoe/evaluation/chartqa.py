"""ChartQA evaluation: batched generation, cached predictions, relaxed
accuracy with and without program of thought (PoT)."""
import json
import os
import os.path as osp

from tqdm import tqdm

from ..prompts import PROMPTS
from ..fileio import atomic_write_json, atomic_write_text
from .metrics import (TOLERANCES, accuracy_table, extract_program,
                      format_table, normalise_pot_output, relaxed_correct)
from .sandbox import require, run_programs


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
                     batch_size=8, max_new_tokens=500):
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
                [PROMPTS[mode] + entries[i]['query'] for i in batch],
                max_new_tokens=max_new_tokens)
            for i, reply in zip(batch, replies):
                cached[i] = reply
                cache.write(json.dumps({'index': i, 'reply': reply}) + '\n')
            cache.flush()
            os.fsync(cache.fileno())
            bar.update(len(batch))
    return [cached[i] for i in range(len(entries))]


def pot_answers(replies, workers=4):
    """Run the program of each PoT reply in the sandbox. Returns
    ``[(answer, ProgramResult)]``; a failing program gives an empty (so
    wrong) answer."""
    results = run_programs([extract_program(r) for r in replies],
                           workers=workers)
    return [(normalise_pot_output(r.stdout) if r.ok else '', r)
            for r in results]


def score(entries, replies, mode, pot_workers=4):
    """Per-entry answers and correctness at each tolerance (PoT replies via
    :func:`pot_answers`)."""
    if mode == 'pot':
        ran = pot_answers(replies, pot_workers)
        answers = [answer for answer, _ in ran]
        errors = [result.error for _, result in ran]
    else:
        answers, errors = [r.strip() for r in replies], [''] * len(replies)
    rows = []
    for entry, reply, answer, error in zip(entries, replies, answers, errors):
        rows.append({'query': entry['query'], 'label': entry['label'],
                     'reply': reply, 'answer': answer, 'error': error,
                     'correct': {str(t): relaxed_correct(answer,
                                                         entry['label'], t)
                                 for t in TOLERANCES}})
    return rows


def evaluate(chat, split_files, image_folder, out_dir, modes=('short', 'pot'),
             batch_size=8, max_new_tokens=500, pot_workers=4):
    """Evaluate ``chat`` on ``{split_name: file}``; writes
    ``out_dir/results.{json,txt}``, ``answers_<split>_<mode>.jsonl`` and the
    prediction caches under ``out_dir/predictions``. Returns the results.
    With ``'pot'`` in ``modes`` the PoT sandbox is checked first
    (:class:`~.sandbox.SandboxUnavailable` before any generation)."""
    if 'pot' in modes:  # fail before generating, not after
        require()
    os.makedirs(out_dir, exist_ok=True)
    results = {}
    for mode in modes:
        correct = {}
        for split, path in split_files.items():
            entries = load_split(path)
            replies = generate_replies(
                chat, entries, image_folder, mode,
                osp.join(out_dir, 'predictions', f'{split}_{mode}.jsonl'),
                batch_size, max_new_tokens)
            rows = score(entries, replies, mode, pot_workers)
            atomic_write_text(
                osp.join(out_dir, f'answers_{split}_{mode}.jsonl'),
                         ''.join(json.dumps(r) + '\n' for r in rows))
            correct[split.capitalize()] = {
                t: [r['correct'][str(t)] for r in rows] for t in TOLERANCES}
        results[mode] = accuracy_table(correct)
    text = '\n\n'.join(
        format_table(table, f'ChartQA relaxed accuracy ({mode}, %)')
        for mode, table in results.items())
    atomic_write_json(osp.join(out_dir, 'results.json'), {
        mode: {split: {str(t): v for t, v in row.items()}
               for split, row in table.items()}
        for mode, table in results.items()})
    atomic_write_text(osp.join(out_dir, 'results.txt'), text + '\n')
    return results, text
