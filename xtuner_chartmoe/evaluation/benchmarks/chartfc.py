"""ChartFC (Akhtar, Cocarascu and Simperl, "Reading and Reasoning over Chart
Images for Evidence-based Automated Fact-Checking", Findings of EACL 2023,
arXiv 2301.11843): a claim (from TabFact) verified against a bar chart,
supports or refutes; accuracy (what the paper reports: ChartBERT 63.8 %)
and macro F1 (which its code, ``code/main.py`` in github.com/mubasharaak/
ChartFC_chartBERT, reports beside it, with scikit-learn). Scored by
:class:`~.claims.ClaimVerification` (prompt and protocols as ChartCheck's,
by the same authors; ChartFC's models are classifiers with no prompt); no
PoT (a verdict is not computed).

Format, as the authors distribute it (read from ``code/utils.py`` and
``configs/config.py`` of that repository; its data folder is not in it and
no copy on the Hugging Face hub was found): ``ChartFC/qa/{train,valid,
test}_barplot_seaborn_diverse_charts.json``, each a list of ``{question
(the claim), answer (1 supports, 0 refutes; ints, or "1"/"0"/"supports"/
"refutes" as its label table accepts), image_filename, img_text (OCR)}``,
the charts in ``ChartFC/images/<image_filename>``.
"""
import os.path as osp

from .base import BENCHMARKS, Format
from .claims import ClaimVerification, claim_samples, image_in, split_of

SUPPORTS = {'1', 'supports'}


def _chartfc(records, file, image_folder):
    return claim_samples(
        records, split_of(file), 'question',
        gold=lambda record: str(record['answer']).lower() in SUPPORTS,
        image=lambda record: image_in(file, record['image_filename'],
                                      image_folder, ('../images', 'images',
                                                     '')),
        uid=lambda record, i: f'{osp.basename(file)}#{i}')


@BENCHMARKS.register_module(name='chartfc')
class ChartFC(ClaimVerification):
    name = 'chartfc'
    title = 'ChartFC'
    formats = (Format(
        'ChartFC JSON', ('question', 'answer', 'image_filename'),
        'ChartFC/qa/test_barplot_seaborn_diverse_charts.json (charts in '
        'ChartFC/images/ or --image-folder)', _chartfc),)
