"""The shared runner of the benchmark seam (:mod:`.base`): every benchmark
is run the same way.

``run(benchmark, chat, data, out_dir)`` reads and checks every sample
first (each file against the benchmark's formats; the image files there),
checks the PoT sandbox when PoT is asked for, then per protocol and answer
mode: generates the replies not yet in the prediction cache (:mod:`.cache`)
in batches through the family-neutral ``ChatModel.answer``, images opened
per batch (one that cannot be read is named in a warning and in its row,
the sample counted wrong, the run goes on), runs PoT programs in the
sandbox (:mod:`xtuner_chartmoe.evaluation.sandbox`), scores with the
benchmark's own scorer and writes, atomically, into ``out_dir``::

    results.json   {"benchmark", "samples": {split: n},
                    "unreadable_images": n,
                    "scores": {protocol: {mode: {row: {column: value}}}}}
    results.txt    one table per protocol and mode
    answers_<split>_<mode>[_<protocol>].jsonl   a row per sample
    predictions/<split>_<mode>[_<protocol>].jsonl   the caches

``[_<protocol>]``: for a protocol other than the benchmark's default (in
``predictions/`` only where its prompt differs: the same prompt shares the
replies).
"""
import json
import os
import os.path as osp
import re
import sys
from collections import Counter

from tqdm import tqdm

from ...dataset.hub_files import (ImageUnreadable, image_name, image_path,
                                  open_image)
from ...engine.user_errors import UserError
from ...fileio import atomic_write_json, atomic_write_text
from ..sandbox import require, run_programs
from .base import Sample, SchemaError
from .cache import PredictionCache


def load_samples(benchmark, data, image_folder=None):
    """Every sample of ``data`` (a file or folder, or a list of them),
    all read and checked before anything is generated. Raises
    :class:`~.base.SchemaError` for a file of another schema, a sample
    given twice, or images named by path of which not one exists (a wrong
    ``image_folder``)."""
    paths = [data] if isinstance(data, (str, os.PathLike)) else data
    samples = [s for path in paths
               for s in benchmark.load(os.fspath(path), image_folder)]
    twice = [key for key, n in Counter((s.split, s.uid)
                                       for s in samples).items() if n > 1]
    if twice:
        raise SchemaError(f'sample {twice[0][1]} of split {twice[0][0]} is '
                          'there twice (a data file given twice?)')
    files = [f for f in (image_path(s.image) for s in samples) if f]
    if files and not any(osp.isfile(f) for f in files):
        raise SchemaError(f'none of the {len(files)} image files exists '
                          f'(first: {files[0]}); is the image folder right?')
    return samples


def pot_answers(replies, protocol, workers=4):
    """Run the program of each PoT reply in the sandbox: ``[(answer,
    ProgramResult)]``, a failed program answered by
    ``protocol.pot_answer(None)``."""
    results = run_programs([protocol.extract_program(r) for r in replies],
                           workers=workers)
    return [(protocol.pot_answer(r.stdout if r.ok else None), r)
            for r in results]


def format_table(table, title):
    """``{row: {column: value}}`` -> a text table under ``title`` (floats
    with two decimals)."""
    columns = list(dict.fromkeys(c for row in table.values() for c in row))
    first = max([12] + [len(name) + 2 for name in table])
    width = max([9] + [len(c) + 2 for c in columns])

    def cell(value):
        if isinstance(value, float):
            return f'{value:{width}.2f}'
        return f'{value!s:>{width}}'

    lines = [title, ' ' * first + ''.join(f'{c:>{width}}' for c in columns)]
    for name, row in table.items():
        lines.append(f'{name:{first}}' + ''.join(cell(row.get(c, '-'))
                                                 for c in columns))
    return '\n'.join(lines)


class _Images:
    """Opens a batch's images; remembers (and warns once about) each image
    that cannot be read: ``failed`` maps its file (or the sample's uid,
    for an embedded image) to the reason."""

    def __init__(self):
        self.failed = {}

    def key(self, sample):
        return image_path(sample.image) or f'{sample.split}/{sample.uid}'

    def open(self, sample):
        """The PIL image, or None when it cannot be read."""
        if self.key(sample) in self.failed:
            return None
        try:
            return open_image(sample.image)
        except ImageUnreadable as err:
            self.failed[self.key(sample)] = str(err)
            tqdm.write(f'warning: {sample.split}/{sample.uid}: {err}; '
                       'counted wrong', file=sys.stderr)
            return None

    def error(self, sample):
        return self.failed.get(self.key(sample), '')


def _generate(chat, samples, prompts, cache, images, batch_size,
              max_new_tokens, desc):
    """``{index: reply}`` for ``samples`` (``[(index, Sample)]``), asking
    only what ``cache`` lacks; samples whose image cannot be read get
    none."""
    replies, todo = {}, []
    for i, sample in samples:
        reply = cache.get(sample.uid, prompts[i])
        if reply is None:
            todo.append((i, sample))
        else:
            replies[i] = reply
    with tqdm(total=len(samples), initial=len(samples) - len(todo),
              desc=desc, unit='q') as bar:
        for start in range(0, len(todo), batch_size):
            batch = [(i, s, images.open(s))
                     for i, s in todo[start:start + batch_size]]
            batch = [item for item in batch if item[2] is not None]
            if batch:
                out = chat.answer([image for _, _, image in batch],
                                  [prompts[i] for i, _, _ in batch],
                                  max_new_tokens=max_new_tokens)
                cache.append([(s.uid, prompts[i], reply)
                              for (i, s, _), reply in zip(batch, out)])
                replies.update((i, r) for (i, _, _), r in zip(batch, out))
            bar.update(min(batch_size, len(todo) - start))
    return replies


def _answers(samples, replies, mode, protocol, images, pot_workers):
    """``(answers, errors)`` aligned with ``samples``: the stripped reply,
    or under PoT its program's answer; None (and the reason) where there
    is no reply."""
    answers = [replies[i].strip() if i in replies else None
               for i in range(len(samples))]
    errors = ['' if i in replies else images.error(s)
              for i, s in enumerate(samples)]
    if mode == 'pot':
        asked = sorted(replies)
        ran = pot_answers([replies[i] for i in asked], protocol, pot_workers)
        for i, (answer, result) in zip(asked, ran):
            answers[i], errors[i] = answer, result.error
    return answers, errors


def choose(benchmark, modes=None, protocols=None):
    """``(modes, [Protocol])`` of the names asked for: default all the
    benchmark's modes and its first protocol; ``protocols=['all']``: every
    one. A name the benchmark lacks raises a :class:`UserError` naming
    those it has."""
    modes = tuple(modes or benchmark.modes)
    names = tuple(protocols or list(benchmark.protocols)[:1])
    if names == ('all',):
        names = tuple(benchmark.protocols)
    for kind, asked, known in (('mode', modes, benchmark.modes),
                               ('protocol', names, benchmark.protocols)):
        unknown = [x for x in asked if x not in known]
        if unknown:
            raise UserError(f'{benchmark.name}: no {kind} {unknown[0]!r}; '
                            f'it has {", ".join(known)}')
    return modes, [benchmark.protocols[n] for n in names]


def _are_samples(data):
    return isinstance(data, (list, tuple)) and bool(data) and all(
        isinstance(s, Sample) for s in data)


def _file_part(split):
    return re.sub(r'[^\w.-]+', '_', split)


def run(benchmark, chat, data, out_dir, image_folder=None, modes=None,
        protocols=None, batch_size=8, max_new_tokens=500, pot_workers=4):
    """Evaluate ``chat`` (a :class:`~xtuner_chartmoe.families.base.
    ChatModel`) on ``benchmark``'s ``data`` (a path, a list of paths or
    the samples of :func:`load_samples`) in ``modes`` under ``protocols``
    (names, as :func:`choose` takes them). Writes ``out_dir`` as the
    module says; returns ``(results, text)``: the content of
    ``results.json`` and of ``results.txt``. Raises
    :class:`~xtuner_chartmoe.evaluation.sandbox.SandboxUnavailable` before
    generating when PoT is asked for and the sandbox cannot run."""
    modes, protocols = choose(benchmark, modes, protocols)
    if 'pot' in modes:  # fail before generating, not after
        require()
    samples = list(data) if _are_samples(data) else load_samples(
        benchmark, data, image_folder)
    splits = {}
    for i, sample in enumerate(samples):
        splits.setdefault(sample.split, []).append((i, sample))
    default = next(iter(benchmark.protocols.values()))
    images, scores, texts = _Images(), {}, []
    for protocol in protocols:
        own = '' if protocol is default else '_' + protocol.name
        for mode in modes:
            prompts = [benchmark.prompt(s, mode, protocol) for s in samples]
            asked = '' if prompts == [benchmark.prompt(s, mode, default)
                                      for s in samples] else own
            replies = {}
            for split, members in splits.items():
                name = f'{_file_part(split)}_{mode}'
                replies.update(_generate(
                    chat, members, prompts, PredictionCache(osp.join(
                        out_dir, 'predictions', f'{name}{asked}.jsonl')),
                    images, batch_size, max_new_tokens, name + asked))
            answers, errors = _answers(samples, replies, mode, protocol,
                                       images, pot_workers)
            rows, table = benchmark.score(samples, answers, protocol)
            _write_answers(out_dir, samples, rows, replies, answers, errors,
                           f'_{mode}{own}')
            scores.setdefault(protocol.name, {})[mode] = table
            texts.append(format_table(table, (
                f'{benchmark.title} {benchmark.metric} '
                f'({mode}, {protocol.name} protocol)')))
    if images.failed:
        texts.append(f'{len(images.failed)} image(s) could not be read: '
                     'their samples are counted wrong (see "error" in '
                     'answers_*.jsonl)')
    results = {'benchmark': benchmark.name,
               'samples': {split: len(m) for split, m in splits.items()},
               'unreadable_images': len(images.failed), 'scores': scores}
    text = '\n\n'.join(texts)
    atomic_write_json(osp.join(out_dir, 'results.json'), results)
    atomic_write_text(osp.join(out_dir, 'results.txt'), text + '\n')
    return results, text


def _write_answers(out_dir, samples, rows, replies, answers, errors, suffix):
    """``answers_<split><suffix>.jsonl``: per sample its uid, image, the
    reply, the answer scored, any error, and the benchmark's row."""
    by_split = {}
    for i, (sample, row) in enumerate(zip(samples, rows)):
        by_split.setdefault(sample.split, []).append(
            {'uid': sample.uid, 'image': image_name(sample.image),
             'reply': replies.get(i), 'answer': answers[i],
             'error': errors[i], **row})
    for split, lines in by_split.items():
        atomic_write_text(
            osp.join(out_dir, f'answers_{_file_part(split)}{suffix}.jsonl'),
            ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in lines))
