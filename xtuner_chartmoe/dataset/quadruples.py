"""ChartMoE-Align style quadruples: (chart image, table, JSON, plotting code).

For one index and seed: draw a data table (``tables``), pick a chart type
(``chart_types``), describe the chart as JSON and generate its plotting code
from that type's template (``charts``); rendering the code gives the PNG.
Questions with short and program-of-thought answers are computed from the
table (``questions``).

Everything is a pure function of ``(seed, index)``.
"""
import random

from .chart_types import CHART_TYPES, compatible_chart_types
from .questions import make_questions
from .tables import make_table, table_to_text


def _rng(seed, index):
    return random.Random(seed * 1_000_003 + index)


def make_quadruple(seed, index, chart_type=None, table=None):
    """Everything about chart ``index`` except the rendered PNG: ``{'index',
    'chart_type', 'table', 'table_text', 'json', 'code', 'questions'}``.
    From ``table`` if given (chart type drawn among the compatible ones),
    else from a random table; ``chart_type`` (a registered name) fixes the
    type instead of drawing it."""
    rng = _rng(seed, index)
    if chart_type is not None:
        chart_type = CHART_TYPES[chart_type]
    elif table is None:
        chart_type = rng.choice(tuple(CHART_TYPES.values()))
    else:
        chart_type = rng.choice(compatible_chart_types(table))
    if table is None:
        table = make_table(rng, chart_type)
    spec = chart_type.describe(rng, table)
    return {
        'index': index,
        'chart_type': chart_type.name,
        'table': table,
        'table_text': table_to_text(table),
        'json': spec,
        'code': chart_type.plot_code(spec),
        'questions': make_questions(rng, table),
    }
