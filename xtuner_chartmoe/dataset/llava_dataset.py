"""``ChartLLaVADataset``: XTuner's LLaVADataset with record validation,
reading data as downloaded (JSON, hub parquet with embedded images,
``datasets``)."""
import io
import logging
import os.path as osp

from datasets import Dataset as HFDataset
from datasets import DatasetDict
from torch.utils.data import Dataset
from mmengine import print_log
from PIL import Image
from xtuner.dataset import ConcatDataset, LLaVADataset
from xtuner.dataset.huggingface import process_hf_dataset
from xtuner.dataset.utils import expand2square
from xtuner.registry import BUILDER
from xtuner.utils import DEFAULT_IMAGE_TOKEN

from .hub_files import (ImageUnreadable, image_name, image_path, open_image,
                        read_records)
from .sources import concatenated, open_source


def load_records(data_path):
    """The records of a ``.json`` list, ``.jsonl`` or ``.parquet`` file
    (:func:`~.hub_files.read_records`); errors name the file."""
    if not osp.isfile(data_path):
        raise FileNotFoundError(f'data file not found: {data_path}')
    return read_records(data_path)


def image_problem(image, image_folder=None, verify=True):
    """Why a record's image cannot be used, or None: a path (relative to
    ``image_folder``) whose file is missing, or with ``verify`` a file or
    embedded bytes (the hub's ``{'bytes', 'path'}``, raw bytes) that PIL
    cannot parse (``Image.verify``: headers and checksums, no decoding)."""
    if isinstance(image, Image.Image):
        return None
    path = image_path(image, image_folder)
    if path is not None and not osp.isfile(path):
        return f'image file missing: {path}'
    data = image.get('bytes') if isinstance(image, dict) else image
    if path is None and not isinstance(data, (bytes, bytearray)):
        return (f'image unreadable: {image_name(image)} (expected a path, a '
                '{bytes, path} dict, bytes or an image)')
    if not verify:
        return None
    try:
        with Image.open(path if path is not None else io.BytesIO(data)) as im:
            im.verify()
    except Exception as err:  # PIL raises many types
        return (f'image unreadable: {path or image_name(image)} '
                f'({type(err).__name__}: {err})')
    return None


def kept_records(good, bad, source, on_bad_record):
    """``good`` once ``bad`` (``file[index]: reason`` lines of ``source``)
    is dealt with as ``on_bad_record`` says: ``'error'`` raises listing
    them, ``'skip'`` warns with the first five; no good record raises."""
    if bad and on_bad_record == 'error':
        raise ValueError(f'{len(bad)} bad record(s):\n' + '\n'.join(bad))
    if bad:
        print_log(f'skipped {len(bad)} bad record(s) of {source}; first:\n' +
                  '\n'.join(bad[:5]), 'current', level=logging.WARNING)
    if not good:
        raise ValueError(f'{source}: no usable record')
    return good


def record_problem(mapped, image_folder, verify_images=True):
    """Why a mapped record (XTuner ``conversation`` format) is unusable, or
    None. Checks turns, empty texts, the image token and the image (a file
    or embedded, :func:`image_problem`)."""
    conversation = mapped.get('conversation')
    if not isinstance(conversation, list) or not conversation:
        return 'no conversation turns'
    for turn_id, turn in enumerate(conversation):
        if not isinstance(turn, dict) or not isinstance(
                turn.get('input', ''), str) or not isinstance(
                    turn.get('output'), str):
            return f'turn {turn_id} is malformed (expected input/output text)'
        if not turn['output'].strip():
            return f'turn {turn_id} has an empty answer'
    image = mapped.get('image')
    has_image = image is not None and image != ''
    has_token = DEFAULT_IMAGE_TOKEN in conversation[0].get('input', '')
    if has_image and not has_token:
        return (f'has image {image_name(image)!r} but no '
                f'{DEFAULT_IMAGE_TOKEN} token')
    if has_token and not has_image:
        return f'has an {DEFAULT_IMAGE_TOKEN} token but no image'
    return image_problem(image, image_folder, verify_images) if has_image \
        else None


class ChartLLaVADataset(LLaVADataset):
    """LLaVA dataset that validates records before tokenising and reads
    data as downloaded.

    ``data_path``: a ``.json`` / ``.jsonl`` / ``.parquet`` file, a folder of
    hub parquet shards (those of ``split``), or a ``datasets.Dataset`` /
    ``DatasetDict`` (its ``split``); see :mod:`.sources`. Images are paths
    relative to ``image_folder`` (None: as they are) or embedded in the
    records (the hub's Image feature ``{'bytes', 'path'}``, raw bytes);
    embedded images are not extracted nor tokenised with the text: the
    tokenised record keeps the image's row in the source, and
    ``__getitem__`` maps that row again and decodes its image.

    ``dataset_map_fn`` (any of XTuner's or ``xtuner_chartmoe.dataset``'s
    map-fns) is applied first; each mapped record is checked by
    :func:`record_problem` (``verify_images``: PIL's header check of every
    image file or embedded image). ``on_bad_record='skip'`` drops bad
    records with a warning naming ``file[index]`` and the reason;
    ``'error'`` raises ``ValueError`` listing them. ``map_num_proc`` sets
    XTuner's tokenising processes (its default of 32 dominates start-up on
    small data). ``__getitem__`` returns XTuner's dict: ``input_ids``,
    ``labels``, ``pixel_values [3, H, W]``.
    """

    def __init__(self, image_folder, image_processor, data_path, tokenizer,
                 dataset_map_fn=None, template_map_fn=None, max_length=2048,
                 pad_image_to_square=False, max_dataset_length=None,
                 map_num_proc=4, on_bad_record='skip', verify_images=True,
                 split='train'):
        if on_bad_record not in ('skip', 'error'):
            raise ValueError("on_bad_record must be 'skip' or 'error', got "
                             f'{on_bad_record!r}')
        self.dataset_map_fn = dataset_map_fn
        parts = open_source(data_path, split)
        records = self._validated(parts, image_folder, dataset_map_fn,
                                  on_bad_record, verify_images)
        # the source rows, kept only when an image must be read from them
        self.source = concatenated(parts) if any(
            r['image_row'] is not None for r in records) else None
        self.text_data = process_hf_dataset(
            dataset=DatasetDict({'train': HFDataset.from_list(records)}),
            tokenizer=tokenizer, max_length=max_length, dataset_map_fn=None,
            template_map_fn=template_map_fn, split='train',
            max_dataset_length=max_dataset_length, remove_unused_columns=False,
            pack_to_max_length=False, with_image_token=True,
            map_num_proc=map_num_proc)
        self.image_folder = image_folder
        self.image_processor = (BUILDER.build(image_processor) if isinstance(
            image_processor, dict) else image_processor)
        self.pad_image_to_square = pad_image_to_square

    @staticmethod
    def _validated(parts, image_folder, dataset_map_fn, on_bad_record,
                   verify_images):
        """The usable mapped records (``id``, ``conversation``, ``image``: a
        path or, for an embedded image, its ``file[index]`` name, and
        ``image_row``: the row of an embedded image in the concatenated
        source, else None)."""
        good, bad, offset = [], [], 0
        for part in parts:
            for index, record in enumerate(part.records):
                try:
                    mapped = dict(record)
                    if dataset_map_fn is not None:
                        mapped.update(dataset_map_fn(record))
                    problem = record_problem(mapped, image_folder,
                                             verify_images)
                except (KeyError, TypeError, AttributeError, IndexError,
                        ValueError, NotImplementedError) as err:
                    problem = f'cannot be mapped ({type(err).__name__}: {err})'
                if problem:
                    bad.append(f'{part.name}[{index}]: {problem}')
                    continue
                image, row = mapped.get('image') or None, None
                if image is not None and image_path(image) is None:
                    image, row = f'{part.name}[{index}]', offset + index
                elif image is not None:
                    image = image_path(image)
                good.append({'id': str(mapped.get('id', offset + index)),
                             'image': image, 'image_row': row,
                             'conversation': mapped['conversation']})
            offset += len(part.records)
        return kept_records(good, bad, ', '.join(p.name for p in parts),
                            on_bad_record)

    def record_image(self, data_dict):
        """The RGB image of a tokenised record: its file, or its embedded
        image mapped again from the source row. Raises
        :class:`~.hub_files.ImageUnreadable` naming it."""
        row = data_dict.get('image_row')
        if row is None:
            return open_image(data_dict['image'], self.image_folder)
        record = self.source[row]
        if self.dataset_map_fn is not None:
            record = self.dataset_map_fn(record)
        try:
            return open_image(record['image'])
        except ImageUnreadable as err:
            raise ImageUnreadable(f"{data_dict['image']}: {err}") from None

    def __getitem__(self, index):
        data_dict = self.text_data[index]
        if data_dict.get('image') is None:  # XTuner's blank pixel_values
            return super().__getitem__(index)
        image = self.record_image(data_dict)
        if self.pad_image_to_square:
            image = expand2square(image, tuple(
                int(x * 255) for x in self.image_processor.image_mean))
        data_dict['pixel_values'] = self.image_processor.preprocess(
            image, return_tensors='pt')['pixel_values'][0]
        return data_dict


class ChartConcatDataset(ConcatDataset):
    """XTuner's ConcatDataset (``datasets``: configs) with the
    ``modality_length`` that ``LengthGroupedSampler`` needs."""

    @property
    def modality_length(self):
        return [n for d in self.datasets for n in d.modality_length]


class RepeatedDataset(Dataset):
    """``dataset`` (a config or a dataset) seen ``times`` times in a row:
    index ``i`` is item ``i % len(dataset)``. Tiny configs train one epoch
    over it instead of many epochs, because mmengine sleeps 2 s at every
    epoch boundary."""

    def __init__(self, dataset, times):
        self.dataset = BUILDER.build(dataset) if isinstance(dataset,
                                                            dict) else dataset
        self.times = times

    def __len__(self):
        return self.times * len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index % len(self.dataset)]

    @property
    def modality_length(self):
        return self.times * self.dataset.modality_length
