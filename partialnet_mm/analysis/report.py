"""What the benchmark tools print: the machine they ran on and Markdown tables."""
import json
import os
import platform
from typing import List, Optional, Sequence

import torch


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return name


# glibc's malloc settings that change CPU step times (docs/benchmarks.md, "The host
# allocator"); a table measured under them says so in its header
MALLOC_ENV = ('MALLOC_MMAP_MAX_', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
              'MALLOC_TOP_PAD_', 'GLIBC_TUNABLES')


def allocator_description() -> str:
    """The host allocator: a preloaded malloc library and the glibc malloc settings in the
    environment, or ``'default malloc'``."""
    preloaded = [os.path.basename(lib) for lib in os.environ.get('LD_PRELOAD', '').split(':')
                 if 'malloc' in os.path.basename(lib)]
    settings = [f'{key}={os.environ[key]}' for key in MALLOC_ENV if key in os.environ]
    return ' '.join(preloaded + settings) or 'default malloc'


def machine_description(device: Optional[torch.device] = None) -> str:
    """The device (GPU name, or CPU model, capability and cores), torch and its threads, and
    on the CPU the host allocator."""
    device = device or torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)}, torch {torch.__version__}'
    return (f'CPU {cpu_name()} ({torch.backends.cpu.get_cpu_capability()}, '
            f'{os.cpu_count()} cores), torch {torch.__version__}, '
            f'threads={torch.get_num_threads()}, {allocator_description()}')


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   title: Optional[str] = None) -> str:
    """``rows`` (strings) under ``header`` as an aligned Markdown table, after ``title``."""
    cells = [list(header)] + [list(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines: List[str] = [title] if title else []
    for n, line in enumerate(cells):
        lines.append('| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) + ' |')
        if n == 0:
            lines.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def write_json_report(path: Optional[str], header: str, rows: Sequence[dict]) -> None:
    """``{'header': ..., 'rows': [...]}`` to ``path`` (nothing when ``path`` is None), for
    tools that read a benchmark's rows back (``tools/plot_benchmark.py``)."""
    if path:
        with open(path, 'w') as f:
            json.dump(dict(header=header, rows=list(rows)), f, indent=2)
        print(f'rows written to {path}')
