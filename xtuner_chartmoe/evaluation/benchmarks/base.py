"""The benchmark seam: a benchmark is one module that says how its files
are read (every format users download it in), how a question is asked (per
answer mode and protocol) and how replies are scored (its own metric, with
per-category rows). Generation, prediction caches, PoT in the sandbox and
the results files are the shared runner's (:mod:`.runner`).

A benchmark module in this package defines a :class:`Benchmark` subclass
and registers it in :data:`BENCHMARKS` under its ``name``
(``@BENCHMARKS.register_module(name='chartqa')``); every module here is
imported by :func:`~xtuner_chartmoe.evaluation.benchmarks.registered`, so
``chartmoe eval NAME`` runs it and ``chartmoe eval --list`` lists it."""
import abc
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Optional

from mmengine.registry import Registry

from ...dataset.hub_files import data_files, parquet_split, read_records
from ...engine.user_errors import UserError

BENCHMARKS = Registry('chartmoe benchmark',
                      locations=['xtuner_chartmoe.evaluation.benchmarks'])


class SchemaError(UserError):
    """A data file that is not one of a benchmark's formats: the message
    names the file, the fields found and the fields each format expects."""


@dataclass
class Sample:
    """One question of a benchmark.

    ``uid``: stable key within its split (prediction caches use it);
    ``split``: the split it is reported under; ``image``: what
    :func:`~xtuner_chartmoe.dataset.hub_files.open_image` opens (a resolved
    path, the hub's ``{'bytes', 'path'}`` dict, bytes or a PIL image);
    ``question``: the benchmark's text, before any prompt; ``labels``: the
    accepted answers; ``category``: per-category rows (e.g. chart type),
    '' for none; ``meta``: what the scorer needs besides (e.g. the pair a
    judgement belongs to).
    """
    uid: str
    split: str
    image: object
    question: str
    labels: tuple
    category: str = ''
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    """One way a benchmark is distributed.

    ``name`` (e.g. ``'HuggingFaceM4/ChartQA parquet'``), ``fields`` every
    record has, ``files`` (what the user points ``--data`` at, for
    ``--list``), ``to_samples(records, file, image_folder) -> [Sample]``.
    """
    name: str
    fields: tuple
    files: str
    to_samples: Callable

    def matches(self, record):
        return set(self.fields) <= set(record)


@dataclass(frozen=True)
class Protocol:
    """How a question is asked and a reply read and scored.

    ``prompt(mode, question) -> text`` (the model adds its chat format;
    None where the benchmark words each question itself,
    :meth:`Benchmark.prompt`);
    ``extract_program(reply) -> code`` and ``pot_answer(stdout or None for a
    failed program) -> answer`` for PoT; ``correct(answer, labels, ...)``:
    the benchmark's per-answer rule under this protocol (None where the
    benchmark's scorer needs no per-answer rule); ``about``: one line for
    ``chartmoe eval --list`` (whose evaluation it reproduces).
    """
    name: str
    prompt: Optional[Callable] = None
    extract_program: Optional[Callable] = None
    pot_answer: Optional[Callable] = None
    correct: Optional[Callable] = None
    about: str = ''


class Benchmark(abc.ABC):
    """A benchmark: ``load(path, image_folder) -> [Sample]`` (any of
    ``formats``; :class:`SchemaError` for a file of none),
    ``protocols`` (name -> :class:`Protocol` of that name, the first the
    default), ``modes`` (answer modes it is run in; ``'pot'`` where PoT
    applies) and ``score(samples, answers, protocol) -> (rows, table)``:
    ``rows`` one dict per sample (``correct`` and whatever explains it),
    ``table`` ``{row name: {column: value}}`` (splits / categories x the
    benchmark's metrics; JSON-ready: string keys, numbers).

    ``title``: the benchmark's name for people (with its paper);
    ``metric``: what the table's values are (e.g. ``'relaxed accuracy
    (%)'``); ``eval_split``: the split of the hub's parquet shards
    (``data/<split>-*.parquet``) evaluated when a folder holds several."""

    name = None
    title = None
    metric = ''
    formats = ()
    modes = ('short',)
    protocols = {}
    eval_split = 'test'

    def format_of(self, records, file):
        """The format of ``file`` (by its first record)."""
        if not records:
            raise SchemaError(f'{file}: no records')
        for fmt in self.formats:
            if fmt.matches(records[0]):
                return fmt
        expected = '; '.join(f'{fmt.name}: {sorted(fmt.fields)}'
                             for fmt in self.formats)
        raise SchemaError(
            f'{file}: not a {self.title} file: fields found '
            f'{sorted(records[0])}, expected {expected}')

    def files(self, path):
        """The data files of ``path``: itself if a file; in a folder every
        data file (:func:`~xtuner_chartmoe.dataset.hub_files.data_files`),
        of hub parquet shards only those of ``eval_split`` when shards of
        several splits are there (``data/{train,val,test}-*.parquet``)."""
        files = data_files(path)
        if osp.isfile(path):
            return files
        splits = {parquet_split(f) for f in files} - {None}
        if len(splits) < 2:
            return files
        if self.eval_split not in splits:
            raise SchemaError(f'{path}: parquet shards of the splits '
                              f'{sorted(splits)}, none of {self.eval_split!r}')
        return [f for f in files
                if parquet_split(f) in (None, self.eval_split)]

    def load(self, path, image_folder=None):
        """Every sample of the data file or folder ``path`` (each record
        checked against its file's format first)."""
        samples = []
        for file in self.files(path):
            records = read_records(file)
            fmt = self.format_of(records, file)
            for i, record in enumerate(records):
                if not fmt.matches(record):
                    raise SchemaError(
                        f'{file}[{i}]: fields found {sorted(record)}, '
                        f'expected {fmt.name}: {sorted(fmt.fields)}')
            samples += fmt.to_samples(records, file, image_folder)
        if not samples:
            raise SchemaError(f'{path}: no {self.title} data file found')
        return samples

    def prompt(self, sample, mode, protocol):
        """The text asked for ``sample`` in answer mode ``mode`` under
        ``protocol`` (the model adds its chat format):
        ``protocol.prompt(mode, sample.question)``, unless a benchmark asks
        its kinds of question differently."""
        return protocol.prompt(mode, sample.question)

    @abc.abstractmethod
    def score(self, samples, answers, protocol):
        """-> (per-sample rows, ``{row: {column: value}}`` table).

        ``answers[i]`` is the answer to ``samples[i]`` (a PoT program's
        output under PoT), or None where the sample got none (its image
        could not be read): the scorer counts such a sample wrong."""
