"""ChartMoE-Align style quadruples: (chart image, table, JSON, plotting code).

For one index and seed: draw a data table, pick a chart type, describe the
chart as JSON (title, axes, series, colours, legend, style), generate Python
plotting code from that chart type's template, and run the code to render the
PNG. Questions with short answers and program-of-thought (PoT) answers are
computed from the table: each PoT program is the very expression the short
answer was computed with, so executing it prints the short answer.

Everything is a pure function of ``(seed, index)``.
"""
import csv
import json
import random

from ..prompts import ALIGN_PROMPTS

CHART_TYPES = ('vertical_bar', 'horizontal_bar', 'grouped_bar', 'stacked_bar',
               'line', 'pie', 'scatter', 'area')
MULTI_SERIES_TYPES = ('grouped_bar', 'stacked_bar', 'line', 'area')
PALETTE = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
           '#e377c2', '#7f7f7f')
TOPICS = (
    ('Year', [str(y) for y in range(2012, 2024)],
     ['Revenue', 'Profit', 'Cost', 'Sales'], 'million USD'),
    ('Country', ['China', 'India', 'Brazil', 'Japan', 'Germany', 'France',
                 'Kenya', 'Mexico'], ['Exports', 'Imports', 'Output'],
     'billion USD'),
    ('Month', ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug'],
     ['Rainfall', 'Visitors', 'Orders'], 'units'),
    ('Product', ['Phones', 'Laptops', 'Tablets', 'Watches', 'Cameras', 'TVs'],
     ['Units sold', 'Returns', 'Stock'], 'thousand'),
    ('Age group', ['18-24', '25-34', '35-44', '45-54', '55-64', '65+'],
     ['Share', 'Users', 'Spending'], 'percent'),
)

_PREAMBLE = '''import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt

categories = {categories!r}
series = {series!r}
colors = {colors!r}
fig, ax = plt.subplots(figsize=({size}, {size}), dpi={dpi})
'''
_BODIES = {
    'vertical_bar': '''ax.bar(categories, series[0][1], color=colors[0], label=series[0][0])
''',
    'horizontal_bar': '''ax.barh(categories, series[0][1], color=colors[0], label=series[0][0])
''',
    'grouped_bar': '''width = 0.8 / len(series)
for i, (name, values) in enumerate(series):
    positions = [j + (i - (len(series) - 1) / 2) * width for j in range(len(categories))]
    ax.bar(positions, values, width=width, color=colors[i], label=name)
ax.set_xticks(range(len(categories)))
ax.set_xticklabels(categories)
''',
    'stacked_bar': '''bottom = [0] * len(categories)
for i, (name, values) in enumerate(series):
    ax.bar(categories, values, bottom=bottom, color=colors[i], label=name)
    bottom = [b + v for b, v in zip(bottom, values)]
''',
    'line': '''for i, (name, values) in enumerate(series):
    ax.plot(categories, values, color=colors[i], marker='o', label=name)
''',
    'area': '''for i, (name, values) in enumerate(series):
    ax.fill_between(categories, values, color=colors[i], alpha=0.4, label=name)
    ax.plot(categories, values, color=colors[i])
''',
    'pie': '''ax.pie(series[0][1], labels=categories, colors=colors, autopct='%1.1f%%')
ax.axis('equal')
''',
    'scatter': '''ax.scatter(categories, series[0][1], color=colors[0], label=series[0][0])
''',
}
_AXES = '''ax.set_xlabel({x_title!r})
ax.set_ylabel({y_title!r})
ax.tick_params(labelsize=7)
fig.subplots_adjust(left=0.18, bottom=0.16, right=0.97, top=0.9)
'''
_FINISH = '''ax.set_title({title!r}, fontsize={font_size})
{legend}{grid}fig.savefig(OUTPUT_PATH, metadata={{'Software': None}})
plt.close(fig)
'''


def _rng(seed, index):
    return random.Random(seed * 1_000_003 + index)


def make_table(rng, chart_type):
    """A random table for ``chart_type``: ``{'header': [x, s1, ..],
    'rows': [[category, v1, ..], ..], 'unit': str}``."""
    x_name, pool, series_pool, unit = rng.choice(TOPICS)
    num_rows = rng.randint(3, min(6, len(pool)))
    num_series = rng.randint(2, 3) if chart_type in MULTI_SERIES_TYPES else 1
    if chart_type == 'scatter':
        x_name = 'x'
        categories = sorted(rng.sample(range(1, 40), num_rows))
    elif x_name in ('Year', 'Month'):
        start = rng.randint(0, len(pool) - num_rows)
        categories = pool[start:start + num_rows]
    else:
        categories = rng.sample(pool, num_rows)
    names = rng.sample(series_pool, num_series)
    integer = rng.random() < 0.5
    rows = []
    for category in categories:
        values = [rng.randint(5, 95) if integer else round(
            rng.uniform(1, 100), 1) for _ in names]
        rows.append([category] + values)
    return {'header': [x_name] + names, 'rows': rows, 'unit': unit}


def compatible_chart_types(table):
    """Chart types that can draw ``table`` (several series need a type with
    a legend; scatter needs numeric x values)."""
    if len(table['header']) > 2:
        return MULTI_SERIES_TYPES
    numeric_x = all(isinstance(row[0], (int, float)) for row in table['rows'])
    return tuple(t for t in CHART_TYPES if t not in MULTI_SERIES_TYPES and (
        t != 'scatter' or numeric_x))


def _number(text, where):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'{where}: expected a number, got {text!r}') from None
    return int(value) if value.is_integer() and '.' not in text else value


def load_tables(path):
    """Read user tables: a CSV (header row, first column = categories, other
    columns numeric) or a JSON table ``{'header', 'rows'[, 'unit']}`` or a
    list of them. Errors name the file, row and column."""
    if path.endswith('.csv'):
        with open(path, newline='') as f:
            lines = [line for line in csv.reader(f) if line]
        if len(lines) < 3 or len(lines[0]) < 2:
            raise ValueError(f'{path}: need a header and >= 2 rows of >= 2 '
                             'columns')
        rows = []
        for r, line in enumerate(lines[1:], start=2):
            if len(line) != len(lines[0]):
                raise ValueError(f'{path}:{r}: {len(line)} columns, header '
                                 f'has {len(lines[0])}')
            rows.append([line[0]] + [_number(v.strip(), f'{path}:{r}:{c + 2}')
                                     for c, v in enumerate(line[1:])])
        return [{'header': lines[0], 'rows': rows, 'unit': 'value'}]
    with open(path) as f:
        tables = json.load(f)
    tables = tables if isinstance(tables, list) else [tables]
    for i, table in enumerate(tables):
        if not {'header', 'rows'} <= set(table) or any(
                len(row) != len(table['header']) for row in table['rows']):
            raise ValueError(f'{path}[{i}]: a table needs header and rows of '
                             'the same length')
        table.setdefault('unit', 'value')
    return tables


def table_to_text(table):
    """Markdown-like text, one row per line: ``Year | Revenue`` ..."""
    lines = [' | '.join(table['header'])]
    lines += [' | '.join(str(v) for v in row) for row in table['rows']]
    return '\n'.join(lines)


def make_chart_json(rng, table, chart_type):
    """The chart's JSON description (what the JSON expert learns to read)."""
    x_name, names = table['header'][0], table['header'][1:]
    categories = [row[0] for row in table['rows']]
    num_colors = len(categories) if chart_type == 'pie' else len(names)
    colors = rng.sample(PALETTE, num_colors)
    subject = ' and '.join(names)
    return {
        'chart_type': chart_type,
        'title': f'{subject} by {x_name}',
        'x_axis': {'title': x_name, 'categories': categories},
        'y_axis': {'title': f"{names[0] if len(names) == 1 else 'Value'} "
                            f"({table['unit']})"},
        'series': [{'name': name, 'color': colors[i % len(colors)],
                    'values': [row[i + 1] for row in table['rows']]}
                   for i, name in enumerate(names)],
        'colors': colors,
        'legend': {'show': len(names) > 1, 'position': 'best'},
        'style': {'grid': rng.random() < 0.5, 'font_size': rng.choice([8, 9,
                                                                       10])},
    }


def make_plot_code(spec, size=3.2, dpi=70):
    """Python source that draws ``spec`` with matplotlib into OUTPUT_PATH."""
    chart_type = spec['chart_type']
    code = _PREAMBLE.format(
        categories=spec['x_axis']['categories'],
        series=[(s['name'], s['values']) for s in spec['series']],
        colors=spec['colors'], size=size, dpi=dpi)
    code += _BODIES[chart_type]
    if chart_type != 'pie':
        code += _AXES.format(x_title=spec['x_axis']['title'],
                             y_title=spec['y_axis']['title'])
    legend = "ax.legend(loc='best', fontsize=7)\n" if spec['legend'][
        'show'] else ''
    grid = 'ax.grid(True, alpha=0.3)\n' if spec['style']['grid'] else ''
    code += _FINISH.format(title=spec['title'],
                           font_size=spec['style']['font_size'], legend=legend,
                           grid=grid)
    return code


def render_code(code, output_path):
    """Run our own template code (trusted) to write the PNG."""
    exec(compile(code, '<chart-code>', 'exec'), {'OUTPUT_PATH': output_path})


def _table_dict(table):
    return {name: {str(row[0]): row[i + 1] for row in table['rows']}
            for i, name in enumerate(table['header'][1:])}


def _pot_program(data, expression):
    return f'data = {data!r}\nprint({expression})\n'


def make_questions(rng, table):
    """Questions about ``table``: ``[{'question', 'answer', 'pot', 'numeric'}]``.

    ``answer`` is ``str(eval(expression))``; ``pot`` defines ``data`` and
    prints the same expression.
    """
    data = _table_dict(table)
    x_name = table['header'][0]
    name = rng.choice(table['header'][1:])
    cats = list(data[name])
    a, b = rng.sample(cats, 2)
    candidates = [
        (f'What is the {name} of {a}?', f'data[{name!r}][{a!r}]', True),
        (f'Which {x_name} has the highest {name}?',
         f'max(data[{name!r}], key=data[{name!r}].get)', False),
        (f'What is the difference in {name} between {a} and {b}?',
         f'round(abs(data[{name!r}][{a!r}] - data[{name!r}][{b!r}]), 2)',
         True),
        (f'What is the total {name} over all shown {x_name} values?',
         f'round(sum(data[{name!r}].values()), 2)', True),
        (f'What is the average {name} across all {x_name} values?',
         f'round(sum(data[{name!r}].values()) / len(data[{name!r}]), 2)',
         True),
        (f'Is the {name} of {a} greater than that of {b}?',
         f"'Yes' if data[{name!r}][{a!r}] > data[{name!r}][{b!r}] else 'No'",
         False),
    ]
    chosen = rng.sample(candidates, 3)
    return [{
        'question': question,
        'answer': str(eval(expression, {'data': data})),  # our own expression
        'pot': _pot_program(data, expression),
        'numeric': numeric,
    } for question, expression, numeric in chosen]


def make_quadruple(seed, index, chart_type=None, table=None):
    """Everything about chart ``index`` except the rendered PNG: from
    ``table`` if given (chart type drawn among the compatible ones), else
    from a random table."""
    rng = _rng(seed, index)
    if table is None:
        chart_type = chart_type or rng.choice(CHART_TYPES)
        table = make_table(rng, chart_type)
    else:
        chart_type = chart_type or rng.choice(compatible_chart_types(table))
    spec = make_chart_json(rng, table, chart_type)
    return {
        'index': index,
        'chart_type': chart_type,
        'table': table,
        'table_text': table_to_text(table),
        'json': spec,
        'code': make_plot_code(spec),
        'questions': make_questions(rng, table),
    }


def knowledge_instructions(quad):
    """Chart-knowledge instructions in the manner of MMC-Instruct (chart
    type, title, axes, extremes, a summary), answered from the
    quadruple: ``[{'question', 'answer'}]``."""
    spec, table = quad['json'], quad['table']
    kind = spec['chart_type'].replace('_', ' ')
    x_name, names = table['header'][0], table['header'][1:]
    lines = []
    for i, name in enumerate(names, start=1):
        values = [(row[i], row[0]) for row in table['rows']]
        (high, at_high), (low, at_low) = max(values), min(values)
        lines.append(f'{name} is highest for {at_high} ({high}) and lowest '
                     f'for {at_low} ({low}).')
    return [
        {'question': 'What type of chart is shown?',
         'answer': f'It is a {kind} chart.'},
        {'question': 'What is the title of the chart, and what does the '
                     'horizontal axis show?',
         'answer': f"The title is \"{spec['title']}\"; the horizontal axis "
                   f'shows {x_name}.'},
        {'question': 'Summarize what the chart shows.',
         'answer': f"The {kind} chart shows {' and '.join(names)} by "
                   f"{x_name}, in {table['unit']}. " + ' '.join(lines)},
    ]


def quadruple_records(quad, image):
    """Records of one quadruple: ``{'table': [..], 'json': [..], 'code':
    [..], 'chartqa': [..], 'knowledge': [..]}``. Align records are in the
    ChartMoE reference format (``image`` list, ``<ImageHere>``,
    ``user``/``assistant``; read with ``chartmoe_map_fn``); QA entries in
    ChartQA format (``imgname``, ``query``, ``label``) plus the ``pot``
    program (``chartqa_map_fn`` / ``chartqa_pot_map_fn``); knowledge
    instructions in MMC-Instruct's format (``image_id``, ``question``,
    ``answer``; ``mmc_instruct_map_fn``)."""
    index = quad['index']
    answers = {'table': quad['table_text'],
               'json': json.dumps(quad['json'], ensure_ascii=False),
               'code': quad['code']}
    records = {kind: [{
        'id': f'{index:06d}_{kind}', 'image': [image], 'conversations': [
            {'from': 'user', 'value': f'<ImageHere>{ALIGN_PROMPTS[kind]}'},
            {'from': 'assistant', 'value': answers[kind]}]}]
        for kind in ALIGN_PROMPTS}
    records['chartqa'] = [{'imgname': image, 'query': qa['question'],
                           'label': qa['answer'], 'pot': qa['pot']}
                          for qa in quad['questions']]
    records['knowledge'] = [{'image_id': image, **qa}
                            for qa in knowledge_instructions(quad)]
    return records
