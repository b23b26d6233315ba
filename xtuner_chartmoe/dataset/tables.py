"""Data tables: random ones, user ones read from CSV / JSON, and their text
form.

A table is ``{'header': [x_name, series_1, ..], 'rows': [[category, v1,
..], ..], 'unit': str}``.
"""
import csv
import json

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


def make_table(rng, chart_type):
    """A random table that ``chart_type`` (a ``ChartType``) can draw: 2-3
    series for a multi-series type, else one; numeric x values for a
    numeric-x type."""
    x_name, pool, series_pool, unit = rng.choice(TOPICS)
    num_rows = rng.randint(3, min(6, len(pool)))
    num_series = rng.randint(2, 3) if chart_type.multi_series else 1
    if chart_type.numeric_x:
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


def has_numeric_x(table):
    """Whether every category (x value) of ``table`` is a number."""
    return all(isinstance(row[0], (int, float)) for row in table['rows'])


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
