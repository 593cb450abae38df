"""The peers plot: latency against parameters (or FLOPs), one marker per model, one panel per
family, from the rows ``tools/benchmark.py --peers --json FILE`` writes."""
import json
from collections import OrderedDict
from typing import Dict, List, Sequence

from ..analysis.report import markdown_table

# x and y axes a plot can use: row key -> axis label
AXES = dict(params_m='parameters (M)', gflops='GFLOPs', full_ms='full network, ms (batch 1)',
            backbone_neck_ms='backbone + neck, ms (batch 1)',
            train_step_s='training step, s', peak_mb='training peak memory, MB')
# marker and colour per backbone family, so a kind of backbone reads the same in every panel
STYLES = OrderedDict([('PartialNet', ('o', 'tab:red')), ('ResNet', ('s', 'tab:blue')),
                      ('FasterNet', ('^', 'tab:green'))])


def load_rows(path: str) -> Dict:
    """``{'header': str, 'rows': [...]}`` as the benchmark wrote it."""
    with open(path) as f:
        report = json.load(f)
    if not isinstance(report, dict) or 'rows' not in report:
        raise ValueError(f'{path}: not a benchmark report; write one with '
                         f'python tools/benchmark.py --peers ... --json {path}')
    return report


def backbone_kind(backbone: str) -> str:
    return backbone.split('-', 1)[0]


def plot_peers(rows: List[Dict], out: str, x: str = 'params_m', y: str = 'full_ms',
               title: str = '') -> str:
    """Write the plot to ``out`` (PNG); returns ``out``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    for key in (x, y):
        if key not in AXES:
            raise ValueError(f'axis {key!r}: choose from {sorted(AXES)}')
        if not any(key in r for r in rows):
            raise ValueError(f'no row has {key!r}: run the benchmark with what it needs '
                             f'(e.g. without --no-flops for gflops)')
    families = list(OrderedDict.fromkeys(r['family'] for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.8),
                             squeeze=False)
    for ax, family in zip(axes[0], families):
        group = [r for r in rows if r['family'] == family and x in r and y in r]
        for kind, (marker, colour) in STYLES.items():
            of_kind = sorted((r for r in group if backbone_kind(r['backbone']) == kind),
                             key=lambda r: r[x])
            if not of_kind:
                continue
            ax.plot([r[x] for r in of_kind], [r[y] for r in of_kind], marker=marker,
                    color=colour, label=kind, linewidth=1)
            for r in of_kind:
                ax.annotate(r['backbone'].split('-', 1)[1], (r[x], r[y]),
                            textcoords='offset points', xytext=(4, 3), fontsize=7)
        ax.set_title(f'{family} ({group[0]["input"]})' if group else family, fontsize=10)
        ax.set_xlabel(AXES[x])
        ax.set_ylabel(AXES[y])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# how a table cell shows each measure
UNITS = dict(params_m=' M', gflops=' G', full_ms=' ms', backbone_neck_ms=' ms',
             train_step_s=' s', peak_mb=' MB')


def format_measure(key: str, number: float) -> str:
    shown = f'{number:.0f}' if number >= 100 else f'{number:.1f}' if number >= 10 else \
        f'{number:.2f}'
    return shown + UNITS[key]


def peers_matrix(rows: List[Dict], values: Sequence[str] = ('params_m', 'full_ms')) -> str:
    """The rows as one Markdown table for a README: a row per backbone, a column per family,
    each cell the ``values`` (keys of :data:`AXES`) joined by `` / ``."""
    for value in values:
        if value not in AXES:
            raise ValueError(f'value {value!r}: choose from {sorted(AXES)}')
    families = list(OrderedDict.fromkeys(r['family'] for r in rows))
    backbones = list(OrderedDict.fromkeys(r['backbone'] for r in rows))
    cells = {(r['family'], r['backbone']): r for r in rows}
    inputs = {r['family']: r['input'] for r in rows}

    def cell(family, backbone):
        row = cells.get((family, backbone), {})
        return ' / '.join('-' if row.get(v) is None else format_measure(v, row[v])
                          for v in values)

    header = ['backbone'] + [f'{f} {inputs[f]}' for f in families]
    return markdown_table(header, [[b] + [cell(f, b) for f in families] for b in backbones])
