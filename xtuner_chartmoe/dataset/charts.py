"""Charts: what a chart type is, its JSON description, its plotting code,
and rendering that code to a PNG.

A :class:`ChartType` holds everything that differs between chart types;
the templates below are shared by all of them. The chart types synthesis
draws from are registered in :mod:`.chart_types`.
"""
from dataclasses import dataclass

from .tables import has_numeric_x

PALETTE = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
           '#e377c2', '#7f7f7f')

_PREAMBLE = '''import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt

categories = {categories!r}
series = {series!r}
colors = {colors!r}
fig, ax = plt.subplots(figsize=({size}, {size}), dpi={dpi})
'''
_AXES = '''ax.set_xlabel({x_title!r})
ax.set_ylabel({y_title!r})
ax.tick_params(labelsize=7)
fig.subplots_adjust(left=0.18, bottom=0.16, right=0.97, top=0.9)
'''
_FINISH = '''ax.set_title({title!r}, fontsize={font_size})
{legend}{grid}fig.savefig(OUTPUT_PATH, metadata={{'Software': None}})
plt.close(fig)
'''


@dataclass(frozen=True)
class ChartType:
    """One kind of chart. In: a table (``tables.make_table``'s format) and a
    ``random.Random``; out: the chart's JSON description (``describe``) and
    the matplotlib code that draws it (``plot_code``).

    ``name``: the ``chart_type`` of the JSON and the registry key.
    ``body``: the code that draws on ``ax`` from the variables
    ``categories`` (x values), ``series`` (``[(name, values), ..]``) and
    ``colors``; the shared code around it creates the figure, then adds
    the axis titles (when ``axes``), title, legend, grid and saves it.
    ``multi_series``: draws 2-3 series with a legend (else one series).
    ``numeric_x``: x values are numbers (random tables get numbers; only
    tables with numeric x values can be drawn).
    ``axes``: has x and y axes whose titles are drawn.
    ``color_per_category``: one colour per category instead of per series.
    """
    name: str
    body: str
    multi_series: bool = False
    numeric_x: bool = False
    axes: bool = True
    color_per_category: bool = False

    def can_draw(self, table):
        """Whether ``table`` fits: as many series as this type draws, and
        numeric x values where this type needs them."""
        return ((len(table['header']) > 2) == self.multi_series
                and (not self.numeric_x or has_numeric_x(table)))

    def describe(self, rng, table):
        """The chart's JSON description (what the JSON expert learns to
        read): title, axes, series, colours, legend, style."""
        x_name, names = table['header'][0], table['header'][1:]
        categories = [row[0] for row in table['rows']]
        num_colors = len(categories if self.color_per_category else names)
        colors = rng.sample(PALETTE, num_colors)
        subject = ' and '.join(names)
        return {
            'chart_type': self.name,
            'title': f'{subject} by {x_name}',
            'x_axis': {'title': x_name, 'categories': categories},
            'y_axis': {'title': f"{names[0] if len(names) == 1 else 'Value'} "
                                f"({table['unit']})"},
            'series': [{'name': name, 'color': colors[i % len(colors)],
                        'values': [row[i + 1] for row in table['rows']]}
                       for i, name in enumerate(names)],
            'colors': colors,
            'legend': {'show': len(names) > 1, 'position': 'best'},
            'style': {'grid': rng.random() < 0.5,
                      'font_size': rng.choice([8, 9, 10])},
        }

    def plot_code(self, spec, size=3.2, dpi=70):
        """Python source that draws the JSON description ``spec`` with
        matplotlib into ``OUTPUT_PATH``."""
        code = _PREAMBLE.format(
            categories=spec['x_axis']['categories'],
            series=[(s['name'], s['values']) for s in spec['series']],
            colors=spec['colors'], size=size, dpi=dpi)
        code += self.body
        if self.axes:
            code += _AXES.format(x_title=spec['x_axis']['title'],
                                 y_title=spec['y_axis']['title'])
        legend = ("ax.legend(loc='best', fontsize=7)\n"
                  if spec['legend']['show'] else '')
        grid = 'ax.grid(True, alpha=0.3)\n' if spec['style']['grid'] else ''
        return code + _FINISH.format(
            title=spec['title'], font_size=spec['style']['font_size'],
            legend=legend, grid=grid)


def render_code(code, output_path):
    """Run our own template code (trusted) to write the PNG."""
    exec(compile(code, '<chart-code>', 'exec'), {'OUTPUT_PATH': output_path})
