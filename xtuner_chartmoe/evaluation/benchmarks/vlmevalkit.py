"""VLMEvalKit's TSV files (github.com/open-compass/VLMEvalKit), shared by
the benchmarks it ships: ``ChartQA_TEST.tsv``, ``ChartBench.tsv``,
``PlotQA.tsv``, downloaded by VLMEvalKit into ``$LMUData`` (``~/LMUData``
by default) under the dataset's name (``ImageBaseDataset.prepare_tsv``,
``vlmeval/dataset/image_base.py``), read by
:func:`~xtuner_chartmoe.dataset.hub_files.read_tsv`.

Every such file has an ``index``, a ``question`` and an ``answer`` column
(what ``ImageBaseDataset.build_prompt`` and the scorers read) and its
images as ``ImageBaseDataset.__init__`` reads them: the ``image`` cell is
the image, base64-encoded; a cell of at most 64 characters is instead the
``index`` of the row whose image it shares (an image asked about several
times is stored once). Without an ``image`` column (VLMEvalKit's
``<name>_local.tsv``, which ``localize_df`` of ``vlmeval/smp/file.py``
writes for a TSV over 1 GB, the images decoded to files) the
``image_path`` cell names the image file. A row without an image, which
VLMEvalKit drops (``skip_noimg``), is kept here with its image unreadable:
the runner names it and counts it wrong."""
import ast
import base64
import os.path as osp

from .base import Format

COLUMNS = ('index', 'question', 'answer')
SHARED = 64  # an image cell this long or shorter is the index of a row


def answers(cell):
    """The accepted answers of an ``answer`` cell as VLMEvalKit's scorers
    read it: the items of a Python list literal (``"['1.2', '1.20']"``;
    ``process_line`` of ``vlmeval/dataset/utils/vqa_eval.py`` takes the
    ``eval`` of a cell that is a list, ``ChartBench.evaluate`` the
    ``ast.literal_eval`` of one that starts with ``[``; here always the
    latter), else the cell itself (``"[Gambia, Niger]"`` is no literal)."""
    if cell.startswith('['):
        try:
            items = ast.literal_eval(cell)
        except (ValueError, SyntaxError, TypeError):
            items = None
        if isinstance(items, list) and items:
            return tuple(map(str, items))
    return (cell,)


def _decode(cell):
    """The bytes of a base64 cell (as ``decode_base64_to_image`` of
    ``vlmeval/smp/vlm.py``: ``base64.b64decode``); b'' when it is not
    base64, which no image reader opens."""
    try:
        return base64.b64decode(cell)
    except ValueError:  # binascii.Error, non-ASCII text
        return b''


def images(records, file, image_folder=None):
    """The image of each record of the TSV ``file``: the ``image`` cell (or
    that of the row it names) decoded, as ``{'bytes', 'path'}`` with
    ``path`` ``<file name>[index <i>]`` for messages; where there is none,
    the ``image_path`` (relative ones under ``image_folder``, else beside
    the TSV). An image that is not one (not base64, a row named that is
    not there) is named and its sample counted wrong by the runner."""
    cells = {record['index']: record.get('image', '') for record in records}
    found = []
    for record in records:
        cell = record.get('image', '')
        if 0 < len(cell) <= SHARED:
            cell = cells.get(cell, '')
        if cell or not record.get('image_path'):
            found.append({'bytes': _decode(cell), 'path': (
                f"{osp.basename(file)}[index {record['index']}]")})
        else:
            found.append(osp.join(image_folder or osp.dirname(file),
                                  record['image_path']))
    return found


def tsv_format(dataset, columns, to_sample):
    """The :class:`~.base.Format` of VLMEvalKit's ``<dataset>.tsv``:
    records with :data:`COLUMNS` and ``columns``; ``to_sample(record,
    image, file)`` makes the sample of a record given its image
    (:func:`images`)."""
    def to_samples(records, file, image_folder):
        return [to_sample(record, image, file) for record, image in zip(
            records, images(records, file, image_folder))]
    return Format(f'VLMEvalKit {dataset}.tsv', COLUMNS + tuple(columns),
                  f'{dataset}.tsv as VLMEvalKit downloads it (into $LMUData, '
                  '~/LMUData by default; images inside, base64), or its '
                  f'{dataset}_local.tsv (image_path: --image-folder for '
                  'relative ones)', to_samples)


def split_of(file):
    """The split a TSV's samples are reported under: its name
    (``PlotQA``)."""
    return osp.splitext(osp.basename(file))[0]
