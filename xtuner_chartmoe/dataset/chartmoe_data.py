"""ChartMoE-Data as ChartMoE trains on it: record files mixed by counts.

ChartMoE (arXiv 2409.03277) ships its training data as JSON lists
(``chart2table.json``, ``chart2json.json``, ``chart2code.json``,
``chartqa.json``, ``chartgemma.json``) of records ``{id, image: [path],
conversations: [{from: user|assistant, value}]}`` with ``<ImageHere>`` in
the user's text, and mixes them with a list file (IDEA-FinAI/ChartMoE
``chartmoe/train/data/*.txt``, read by ``train.py``'s
``make_supervised_data_module`` with ``given_num``): one ``FILE COUNT``
per line, COUNT in thousands of samples (``./data/chart2table.json 500``
= 500,000): a larger file is ``random.sample``-d down, a smaller one padded
up with ``random.choice`` duplicates; -1 takes the file as it is.

:func:`read_mix` reads such a list (a txt file, or ``[(file, count),
...]`` in a config); :func:`mix_records` draws the samples, deterministic
from ``seed``; :class:`ChartMoEDataset` tokenizes them in IXC2's training
format (:mod:`xtuner_chartmoe.families.ixc2.training_format`) with the
images at 490 px. Bad records are named ``file[index]: reason`` and
skipped with a warning or raised (``on_bad_record='error'``), as
:class:`~.llava_dataset.ChartLLaVADataset` does.
"""
import os.path as osp
import random

from mmengine import print_log
from torch.utils.data import Dataset
from xtuner.registry import BUILDER

from .hub_files import image_path
from .llava_dataset import image_problem, kept_records, load_records

IMAGE_MARK = '<ImageHere>'
COUNT_UNIT = 1000  # ChartMoE's given_num: counts are in thousands


def read_mix(mix, data_root=None):
    """``[(path, count), ...]`` from a ChartMoE list file (``FILE COUNT``
    per line) or a list of pairs; relative paths are joined to
    ``data_root`` when given."""
    if isinstance(mix, str):
        if not osp.isfile(mix):
            raise FileNotFoundError(f'data list not found: {mix}')
        pairs = []
        with open(mix) as f:
            for number, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise ValueError(f'{mix}:{number}: expected "FILE COUNT", '
                                     f'got {line.strip()!r}')
                pairs.append((fields[0], fields[1]))
        mix = pairs
    out = []
    for entry in mix:
        path, count = entry
        try:
            count = float(count)
        except (TypeError, ValueError):
            raise ValueError(f'{path}: the count must be a number (-1 for '
                             f'all), got {count!r}') from None
        if data_root is not None and not osp.isabs(path):
            path = osp.join(data_root, path)
        out.append((path, count))
    if not out:
        raise ValueError(f'{mix}: the data list is empty')
    return out


def record_problem(record, image_folder, verify_images=False):
    """Why a ChartMoE-Data record is unusable, or None: exactly one image
    that exists (and opens, with ``verify_images``), one ``<ImageHere>`` in
    the user turns, turns alternating user/assistant from the user's,
    non-empty answers."""
    images = record.get('image')
    if not isinstance(images, list) or len(images) != 1:
        return (f'expected one image in "image", got '
                f'{len(images) if isinstance(images, list) else images!r}')
    turns = record.get('conversations')
    if not isinstance(turns, list) or not turns or len(turns) % 2:
        return 'expected user/assistant turn pairs in "conversations"'
    for i, turn in enumerate(turns):
        role = turn.get('from') if isinstance(turn, dict) else None
        want = ('user', 'human') if i % 2 == 0 else ('assistant', 'gpt')
        if not isinstance(role, str) or role.lower() not in want:
            return (f'turn {i} is from {role!r}; turns must alternate user, '
                    'assistant')
        if not isinstance(turn.get('value'), str):
            return f'turn {i} has no text "value"'
        if i % 2 and not turn['value'].strip():
            return f'turn {i} has an empty answer'
    marks = sum(t['value'].count(IMAGE_MARK) for t in turns)
    if marks != 1:
        return f'{marks} {IMAGE_MARK} marks for one image'
    # image_folder None: the path as written (relative to the working
    # directory, as ChartMoE's data_mix.py opens it)
    return image_problem(images[0], image_folder, verify_images)


def valid_records(path, image_folder, on_bad_record='skip',
                  verify_images=False):
    """The usable records of ``path``; bad ones named ``path[index]:
    reason``, skipped with one warning or raised."""
    good, bad = [], []
    for index, record in enumerate(load_records(path)):
        problem = (record_problem(record, image_folder, verify_images)
                   if isinstance(record, dict) else 'not a JSON object')
        if problem:
            bad.append(f'{path}[{index}]: {problem}')
        else:
            good.append(record)
    return kept_records(good, bad, path, on_bad_record)


def draw(records, count, path, rng, count_unit=COUNT_UNIT,
         allow_repeat=True):
    """ChartMoE's ``given_num`` draw from one file's ``records``: -1 all;
    else ``int(count * count_unit)`` samples, sampled down without
    repeats or padded up with random duplicates (``allow_repeat``; else a
    ``ValueError`` naming the file, the count and its size)."""
    if count == -1:
        return list(records)
    if count < 0:
        raise ValueError(f'{path}: count {count:g}; expected -1 (all) or a '
                         'number of samples >= 0')
    wanted = int(count * count_unit)
    if len(records) > wanted:
        return rng.sample(records, wanted)
    if not allow_repeat:
        raise ValueError(
            f'{path}: {count:g} x {count_unit} = {wanted} samples asked but '
            f'the file holds {len(records)} usable records; lower the count '
            'or allow repeats (allow_repeat=True)')
    return records + [rng.choice(records)
                      for _ in range(wanted - len(records))]


def mix_records(mix, image_folder=None, seed=0, count_unit=COUNT_UNIT,
                allow_repeat=True, on_bad_record='skip', verify_images=False,
                data_root=None):
    """The records of a ChartMoE data list (:func:`read_mix`), each file
    validated then drawn (:func:`draw`) with one ``random.Random(seed)`` in
    list order; returns ``[(path, record), ...]`` in list order."""
    if on_bad_record not in ('skip', 'error'):
        raise ValueError("on_bad_record must be 'skip' or 'error', got "
                         f'{on_bad_record!r}')
    rng = random.Random(seed)
    out = []
    for path, count in read_mix(mix, data_root):
        records = valid_records(path, image_folder, on_bad_record,
                                verify_images)
        drawn = draw(records, count, path, rng, count_unit, allow_repeat)
        print_log(f'{path}: {len(drawn)} samples of {len(records)} records',
                  'current')
        out.extend((path, r) for r in drawn)
    return out


class ChartMoEDataset(Dataset):
    """ChartMoE-Data mixed by a data list, tokenized for IXC2.

    ``data_mix``: a list file (``FILE COUNT`` lines) or ``[(file, count),
    ...]``; ``data_root`` prefixes relative files; ``image_folder``
    prefixes image paths (None: as written). ``seed``, ``count_unit``
    (1000: ChartMoE's thousands), ``allow_repeat``, ``on_bad_record``,
    ``verify_images``: see :func:`mix_records`. ``tokenizer``: IXC2's
    (an object or a config dict); ``image_size``: 490 for IXC2.

    ``__getitem__(i)`` -> ``{'input_ids': [int], 'labels': [int],
    'pixel_values': [1, 3, S, S] float32}`` (the image as one
    ``IMAGE_TOKEN_INDEX`` in ``input_ids``; batch with
    ``ixc2_collate_fn``).
    """

    def __init__(self, data_mix, tokenizer, image_size=490, data_root=None,
                 image_folder=None, seed=0, count_unit=COUNT_UNIT,
                 allow_repeat=True, on_bad_record='skip',
                 verify_images=False):
        from xtuner_chartmoe.families.ixc2.training_format import (
            assistant_header_length)
        self.tokenizer = (BUILDER.build(tokenizer) if isinstance(
            tokenizer, dict) else tokenizer)
        self.header_length = assistant_header_length(self.tokenizer)
        self.samples = mix_records(data_mix, image_folder, seed, count_unit,
                                   allow_repeat, on_bad_record, verify_images,
                                   data_root)
        self.image_size = image_size
        self.image_folder = image_folder

    def __len__(self):
        return len(self.samples)

    def tokenized(self, index):
        """The :class:`TrainingSample` of sample ``index``."""
        from xtuner_chartmoe.families.ixc2.training_format import (
            tokenize_conversation)
        return tokenize_conversation(
            self.tokenizer, self.samples[index][1]['conversations'],
            self.header_length)

    def __getitem__(self, index):
        from xtuner_chartmoe.families.ixc2.modeling_vision import (
            image_to_tensor)
        sample = self.tokenized(index)
        record = self.samples[index][1]
        path = image_path(record['image'][0], self.image_folder)
        return {'input_ids': sample.input_ids, 'labels': sample.labels,
                'pixel_values': image_to_tensor(path, self.image_size)[None]}
