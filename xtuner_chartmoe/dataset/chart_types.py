"""The registry of chart types synthesis draws from: one
:class:`~.charts.ChartType` per type, in drawing order.

A new chart type is one more ``ChartType`` in the tuple below (or, from
outside, one ``register_chart_type`` call). The registry's order and size
are part of what a seed draws: adding a type changes which type, and so
which chart, each index of a seed gets.
"""
from .charts import ChartType

CHART_TYPES = {chart_type.name: chart_type for chart_type in (
    ChartType('vertical_bar', body='''\
ax.bar(categories, series[0][1], color=colors[0], label=series[0][0])
'''),
    ChartType('horizontal_bar', body='''\
ax.barh(categories, series[0][1], color=colors[0], label=series[0][0])
'''),
    ChartType('grouped_bar', multi_series=True, body='''\
width = 0.8 / len(series)
for i, (name, values) in enumerate(series):
    positions = [j + (i - (len(series) - 1) / 2) * width for j in range(len(categories))]
    ax.bar(positions, values, width=width, color=colors[i], label=name)
ax.set_xticks(range(len(categories)))
ax.set_xticklabels(categories)
'''),
    ChartType('stacked_bar', multi_series=True, body='''\
bottom = [0] * len(categories)
for i, (name, values) in enumerate(series):
    ax.bar(categories, values, bottom=bottom, color=colors[i], label=name)
    bottom = [b + v for b, v in zip(bottom, values)]
'''),
    ChartType('line', multi_series=True, body='''\
for i, (name, values) in enumerate(series):
    ax.plot(categories, values, color=colors[i], marker='o', label=name)
'''),
    ChartType('pie', axes=False, color_per_category=True, body='''\
ax.pie(series[0][1], labels=categories, colors=colors, autopct='%1.1f%%')
ax.axis('equal')
'''),
    ChartType('scatter', numeric_x=True, body='''\
ax.scatter(categories, series[0][1], color=colors[0], label=series[0][0])
'''),
    ChartType('area', multi_series=True, body='''\
for i, (name, values) in enumerate(series):
    ax.fill_between(categories, values, color=colors[i], alpha=0.4, label=name)
    ax.plot(categories, values, color=colors[i])
'''),
)}


def register_chart_type(chart_type):
    """Add ``chart_type`` (a ``ChartType``) to the types synthesis draws
    from, after those already registered; returns it."""
    if chart_type.name in CHART_TYPES:
        raise ValueError(f'chart type {chart_type.name!r} is already '
                         'registered')
    CHART_TYPES[chart_type.name] = chart_type
    return chart_type


def compatible_chart_types(table):
    """The registered types that can draw ``table``, in registry order."""
    return tuple(t for t in CHART_TYPES.values() if t.can_draw(table))
