"""ChartCheck (Akhtar, Subedi, Gupta, Tahmasebi, Cocarascu and Simperl,
"ChartCheck: Explainable Fact-Checking over Real-World Chart Images",
arXiv 2311.07453): human-written claims about real-world charts (Wikimedia
Commons), true or false, with two test sets; accuracy per test set, as
ChartMoE (arXiv 2409.03277) reports it, and macro F1, which the authors'
scripts compute beside it (``classification_explanation_flanT5.py``,
``table_based_classification.py`` in github.com/mubasharaak/ChartCheck).
Asked with the authors' zero-shot prompt for chart models
(``matcha_0_shot_baseline.py``) and scored by
:class:`~.claims.ClaimVerification` under ``ours`` (the reply's first word)
or ``exact`` (that baseline's exact match with Yes / No); the explanations
are not scored; no PoT.

Format, as the authors distribute it (read from that repository:
``data/ChartCheck_final/validation.json`` and the scripts' file names
``..._test_V2.json`` / ``..._test_two_V2.json``; no copy on the Hugging Face
hub was found): a JSON list of ``{db_id or id, chart_img (the chart's URL,
https://chartfc.s3.amazonaws.com/<file>), caption, label ("TRUE" /
"FALSE"), claim, explanation, ...}``; the charts, downloaded, are found by
the URL's file name in ``images/`` beside the JSON, beside it, or in
``--image-folder``. A file named ``*test_two*`` is test set two, another
``*test*`` test set one.
"""
import os.path as osp
from urllib.parse import unquote, urlparse

from .base import BENCHMARKS, Format
from .claims import ClaimVerification, claim_samples, image_in, split_of

SPLITS = {'test': 'test_one'}  # the paper's "test set one"


def chart_file(url):
    """The file name of a chart URL (``.../Languages.png`` ->
    ``Languages.png``), or of a plain name."""
    return unquote(osp.basename(urlparse(url).path))


def _chartcheck(records, file, image_folder):
    split = split_of(file)
    return claim_samples(
        records, SPLITS.get(split, split), 'claim',
        gold=lambda record: str(record['label']).upper() == 'TRUE',
        image=lambda record: image_in(file, chart_file(record['chart_img']),
                                      image_folder),
        uid=lambda record, i: f'{osp.basename(file)}#{i}')


@BENCHMARKS.register_module(name='chartcheck')
class ChartCheck(ClaimVerification):
    name = 'chartcheck'
    title = 'ChartCheck'
    formats = (Format(
        'ChartCheck JSON', ('claim', 'label', 'chart_img'),
        "the folder of ChartCheck's JSON files or one of them (charts in "
        'images/ beside them or --image-folder)', _chartcheck),)
