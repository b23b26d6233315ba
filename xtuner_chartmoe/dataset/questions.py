"""Questions about a chart, answered from its table: ChartQA-style
questions with short and program-of-thought (PoT) answers, and MMC-Instruct
style chart-knowledge instructions."""


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
