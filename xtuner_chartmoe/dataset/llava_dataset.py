"""``ChartLLaVADataset``: XTuner's LLaVADataset with record validation."""
import json
import logging
import os.path as osp

from datasets import Dataset as HFDataset
from datasets import DatasetDict
from torch.utils.data import Dataset
from mmengine import print_log
from PIL import Image
from xtuner.dataset import ConcatDataset, LLaVADataset
from xtuner.dataset.huggingface import process_hf_dataset
from xtuner.dataset.llava import load_jsonl
from xtuner.registry import BUILDER
from xtuner.utils import DEFAULT_IMAGE_TOKEN


def load_records(data_path):
    """Read a ``.json`` list or ``.jsonl`` file; errors name the file."""
    if not osp.isfile(data_path):
        raise FileNotFoundError(f'data file not found: {data_path}')
    try:
        if data_path.endswith('.jsonl'):
            records = load_jsonl(data_path)
        else:
            with open(data_path) as f:
                records = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f'{data_path}: not valid JSON ({err})') from None
    if not isinstance(records, list):
        raise ValueError(f'{data_path}: expected a list of records, got '
                         f'{type(records).__name__}')
    return records


def record_problem(mapped, image_folder, verify_images=True):
    """Why a mapped record (XTuner ``conversation`` format) is unusable, or
    None. Checks turns, empty texts, the image token and the image file."""
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
    has_token = DEFAULT_IMAGE_TOKEN in conversation[0].get('input', '')
    if image and not has_token:
        return f'has image {image!r} but no {DEFAULT_IMAGE_TOKEN} token'
    if has_token and not image:
        return f'has an {DEFAULT_IMAGE_TOKEN} token but no image'
    if image:
        path = osp.join(image_folder, image)
        if not osp.isfile(path):
            return f'image file missing: {path}'
        if verify_images:
            try:
                with Image.open(path) as im:
                    im.verify()
            except Exception as err:  # PIL raises many types
                return f'image unreadable: {path} ({err})'
    return None


class ChartLLaVADataset(LLaVADataset):
    """LLaVA dataset that validates records before tokenising.

    ``dataset_map_fn`` (any of XTuner's or ``xtuner_chartmoe.dataset``'s
    map-fns) is applied first; each mapped record is checked by
    :func:`record_problem`. ``on_bad_record='skip'`` drops bad records with a
    warning naming ``file[index]`` and the reason; ``'error'`` raises
    ``ValueError`` listing them. ``map_num_proc`` sets XTuner's tokenising
    processes (its default of 32 dominates start-up on small data).
    ``__getitem__`` returns XTuner's dict: ``input_ids``, ``labels``,
    ``pixel_values [3, H, W]``.
    """

    def __init__(self, image_folder, image_processor, data_path, tokenizer,
                 dataset_map_fn=None, template_map_fn=None, max_length=2048,
                 pad_image_to_square=False, max_dataset_length=None,
                 map_num_proc=4, on_bad_record='skip', verify_images=True):
        if on_bad_record not in ('skip', 'error'):
            raise ValueError("on_bad_record must be 'skip' or 'error', got "
                             f'{on_bad_record!r}')
        records = self._validated(
            data_path, image_folder, dataset_map_fn, on_bad_record,
            verify_images)
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
    def _validated(data_path, image_folder, dataset_map_fn, on_bad_record,
                   verify_images):
        good, bad = [], []
        for index, record in enumerate(load_records(data_path)):
            try:
                mapped = dict(record)
                if dataset_map_fn is not None:
                    mapped.update(dataset_map_fn(record))
                problem = record_problem(mapped, image_folder, verify_images)
            except (KeyError, TypeError, AttributeError, IndexError, ValueError,
                    NotImplementedError) as err:
                problem = f'cannot be mapped ({type(err).__name__}: {err})'
            if problem:
                bad.append(f'{data_path}[{index}]: {problem}')
                continue
            mapped['id'] = str(mapped.get('id', index))
            good.append({k: mapped[k] for k in ('id', 'image', 'conversation')
                         if k in mapped})
        if bad and on_bad_record == 'error':
            raise ValueError(f'{len(bad)} bad record(s):\n' + '\n'.join(bad))
        if bad:
            print_log(f'skipped {len(bad)} bad record(s) of {data_path}; first:'
                      '\n' + '\n'.join(bad[:5]), 'current',
                      level=logging.WARNING)
        if not good:
            raise ValueError(f'{data_path}: no usable record')
        return good


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
