"""The records a training data set reads, as users download them.

``data_path`` of :class:`~xtuner_chartmoe.dataset.ChartLLaVADataset` may be

- a ``.json`` / ``.jsonl`` file (ChartQA's GitHub JSON, ChartMoE-Data, ...;
  images are paths), read by :func:`~.hub_files.read_records`;
- a hub ``.parquet`` file, or a folder of them as ``huggingface-cli
  download --repo-type dataset REPO --local-dir DIR`` leaves it
  (``DIR/data/{train,val,test}-*.parquet``), of which the shards of one
  split are read; images embedded (``HuggingFaceM4/ChartQA``,
  ``lmms-lab/ChartQA``, ``ahmed-masry/ChartGemma``);
- a ``datasets.Dataset``, or the ``DatasetDict`` of ``load_dataset`` (its
  split).

Parquet is read through ``datasets`` (``Dataset.from_parquet``: an Arrow
copy in its cache, memory-mapped), so the images stay on disk until a
record is used, shared by every process of a machine; image columns are
never decoded here (the ``datasets`` Image feature is switched to its
``{'bytes', 'path'}`` form).
"""
import os.path as osp
from collections import namedtuple

from datasets import Dataset, DatasetDict, Image, concatenate_datasets

from .hub_files import data_files, parquet_split, read_records

# One file (or in-memory data set) of a source: ``name`` for messages,
# ``records`` (a list or a ``datasets.Dataset``) indexable by row.
Part = namedtuple('Part', 'name records')


def open_source(data_path, split='train'):
    """The :class:`Part` list of ``data_path`` (see the module docstring);
    ``split`` picks the shards of a folder or the split of a
    ``DatasetDict``. Errors name the path and what was found."""
    if isinstance(data_path, DatasetDict):
        if split not in data_path:
            raise ValueError(f'no split {split!r} in the DatasetDict (splits: '
                             f'{", ".join(data_path)})')
        return [Part(f'{_dataset_name(data_path[split])}:{split}',
                     undecoded(data_path[split]))]
    if isinstance(data_path, Dataset):
        return [Part(_dataset_name(data_path), undecoded(data_path))]
    if not osp.exists(data_path):
        raise FileNotFoundError(f'data file not found: {data_path}')
    if osp.isdir(data_path):
        return [Part(path, _parquet(path))
                for path in _split_shards(data_path, split)]
    if data_path.endswith('.parquet'):
        return [Part(data_path, _parquet(data_path))]
    return [Part(data_path, read_records(data_path))]


def _split_shards(folder, split):
    """The parquet shards of ``split`` under ``folder`` (sorted)."""
    shards = data_files(folder, ('.parquet', ))
    chosen = [path for path in shards if parquet_split(path) == split]
    if not chosen:
        found = sorted({parquet_split(p) or osp.basename(p) for p in shards})
        raise FileNotFoundError(
            f'{folder}: no parquet shard of split {split!r} (found: '
            f'{", ".join(found) or "no parquet file"})')
    return chosen


def _parquet(path):
    """A hub parquet file as a memory-mapped ``datasets.Dataset``."""
    return undecoded(Dataset.from_parquet(path))


def undecoded(dataset):
    """``dataset`` with its image columns (the ``datasets`` Image feature)
    returning the stored ``{'bytes', 'path'}`` instead of decoded images."""
    for name, feature in dataset.features.items():
        if isinstance(feature, Image) and feature.decode:
            dataset = dataset.cast_column(name, Image(decode=False))
    return dataset


def _dataset_name(dataset):
    """A ``datasets.Dataset``'s Arrow file, for messages."""
    files = dataset.cache_files
    return files[0]['filename'] if files else 'datasets.Dataset'


def concatenated(parts):
    """The records of all ``parts`` as one sequence indexable by the global
    row (row ``i`` of part ``k`` is ``sum(len(parts[:k])) + i``)."""
    if all(isinstance(part.records, list) for part in parts):
        return [record for part in parts for record in part.records]
    return concatenate_datasets([part.records for part in parts])
