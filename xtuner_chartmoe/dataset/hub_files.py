"""Data files as users download them: JSON, JSON lines, the hub's parquet
shards with the images inside, or VLMEvalKit's TSV tables, read into plain
records; images opened from whatever a record holds (a path, the hub's
embedded ``{'bytes', 'path'}``, raw bytes or a PIL image). Used by the
training datasets and the benchmark loaders alike; errors name the file
(and the image)."""
import csv
import io
import json
import os
import os.path as osp
import re

from PIL import Image

DATA_SUFFIXES = ('.json', '.jsonl', '.parquet')
# The hub's shard names: ``data/test-00000-of-00001.parquet``,
# ``test-00000-of-00002-<hash>.parquet``, ``test.parquet``.
_SHARD = re.compile(r'^(?P<split>[\w.]+?)(-\d{5}-of-\d{5}.*)?\.parquet$')


class DataFileError(ValueError):
    """A data file that cannot be read as records (the message names it)."""


class ImageUnreadable(ValueError):
    """An image that cannot be opened (the message names it and why)."""


def data_files(path, suffixes=DATA_SUFFIXES):
    """``path`` itself if it is a file, else every data file under the
    folder ``path`` (recursively, sorted; hidden folders such as the hub's
    ``.cache`` skipped)."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'data file not found: {path}')
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        found += [osp.join(root, name) for name in sorted(files)
                  if name.endswith(suffixes)]
    return found


def parquet_split(path):
    """The split a hub parquet shard belongs to (``'test'`` for
    ``data/test-00000-of-00001.parquet``), or None for another name."""
    match = _SHARD.match(osp.basename(path))
    return match.group('split') if match else None


def read_tsv(path):
    """The rows of a TSV table as VLMEvalKit writes and reads them
    (github.com/open-compass/VLMEvalKit, ``vlmeval/smp/file.py``: ``dump``
    with pandas ``to_csv(sep='\\t', quoting=csv.QUOTE_ALL)``, ``load`` with
    ``read_csv(sep='\\t')``): a header, then one row per record, each a dict
    of the cells' text as written (a base64 image is megabytes long: the
    field size limit is raised)."""
    csv.field_size_limit(2 ** 31 - 1)
    with open(path, encoding='utf-8', newline='') as f:
        reader = csv.DictReader(f, delimiter='\t')
        rows = list(reader)
    for i, row in enumerate(rows):
        if None in row or None in row.values():  # cells missing or over
            raise ValueError(f'record {i} has not the header\'s '
                             f'{len(reader.fieldnames)} cells')
    return rows


def read_records(path):
    """The records (dicts) of one ``.json`` (a list), ``.jsonl``,
    ``.parquet`` or ``.tsv`` (:func:`read_tsv`) file. Parquet image columns
    come back as the hub stores them: ``{'bytes': b'...', 'path': name}``."""
    try:
        if path.endswith('.parquet'):
            import pyarrow.parquet as pq
            return pq.read_table(path).to_pylist()
        if path.endswith('.tsv'):
            return read_tsv(path)
        with open(path, encoding='utf-8') as f:
            if path.endswith('.jsonl'):
                records = [json.loads(line) for line in f if line.strip()]
            else:
                records = json.load(f)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, csv.Error) as err:  # JSON, Arrow, TSV
        raise DataFileError(f'{path}: not a readable {osp.splitext(path)[1]} '
                            f'file ({err})') from None
    if not isinstance(records, list) or not all(
            isinstance(r, dict) for r in records):
        raise DataFileError(f'{path}: expected a list of records (objects), '
                            f'got {type(records).__name__}')
    return records


def image_name(image):
    """A short name of a record's image for messages."""
    if isinstance(image, dict):
        return image.get('path') or '<embedded image>'
    if isinstance(image, (bytes, bytearray)):
        return '<embedded image>'
    if isinstance(image, Image.Image):
        return '<image>'
    return str(image)


def image_path(image, image_folder=None):
    """The file a path-valued image points at (``image_folder`` joined to a
    relative one), or None when the image is held in the record itself."""
    if isinstance(image, dict) and image.get('bytes') is None:
        image = image.get('path')
    if not isinstance(image, str):
        return None
    return osp.join(image_folder, image) if image_folder else image


def open_image(image, image_folder=None):
    """A record's image as an RGB PIL image: a path (relative to
    ``image_folder`` when given), the hub's ``{'bytes', 'path'}`` dict,
    bytes or a PIL image. Raises :class:`ImageUnreadable` naming it."""
    if isinstance(image, Image.Image):
        return image.convert('RGB')
    path = image_path(image, image_folder)
    data = image.get('bytes') if isinstance(image, dict) else image
    try:
        if path is not None:
            with Image.open(path) as im:
                return im.convert('RGB')
        if isinstance(data, (bytes, bytearray)):
            with Image.open(io.BytesIO(data)) as im:
                return im.convert('RGB')
    except Exception as err:  # PIL raises many types
        raise ImageUnreadable(
            f'image unreadable: {path or image_name(image)} '
            f'({type(err).__name__}: {err})') from None
    raise ImageUnreadable(f'image unreadable: {image_name(image)} (expected a '
                          'path, a {bytes, path} dict, bytes or an image)')
