"""Visualizers: one per run, and drawing predictions for every library."""
from typing import Optional

from mmengine.visualization import Visualizer

from .datasets import DataError


def own_visualizer(cfg) -> None:
    """Give this run its own visualizer when an earlier run in this process took its name.

    mmdet's and mmseg's ``default_runtime`` name the visualizer ``'visualizer'`` and mmengine
    builds it with ``get_instance``, which hands back an existing instance of that name, with
    the earlier run's ``save_dir``. A second train/test in one process (the tests,
    ``tools/learning_benchmark.py``, a notebook) would write its scalars and drawings into the
    first run's work dir. A run that is first keeps the config's name.
    """
    vis = cfg.get('visualizer')
    if not isinstance(vis, dict) or vis.get('name') is None:
        return  # unnamed: mmengine names it after the (timestamped) experiment

    def classes(cls):
        yield cls
        for sub in cls.__subclasses__():
            yield from classes(sub)

    def taken(name):
        return any(c.check_instance_created(name) for c in classes(Visualizer))

    base, n = vis['name'], 1
    while taken(vis['name']):
        vis['name'] = f'{base}_{n}'
        n += 1


def enable_visualization(cfg, show_dir: Optional[str], show: bool = False,
                         wait_time: float = 2.) -> None:
    """Switch on drawing of predictions, the way each library's own test.py does."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise DataError("--show/--show-dir need a 'visualization' hook in default_hooks; add "
                        "default_hooks=dict(visualization=dict(type=...VisualizationHook))")
    hook = hooks['visualization']
    scope = cfg.get('default_scope', 'mmengine')
    if scope == 'mmpretrain':
        hook.update(enable=True, show=show, wait_time=wait_time)
        if show_dir:
            hook['out_dir'] = show_dir
        return
    hook['draw'] = True
    if show:
        hook.update(show=True, wait_time=wait_time)
    if show_dir:
        if scope == 'mmseg':
            cfg.visualizer['save_dir'] = show_dir
        else:  # mmdet
            hook['test_out_dir'] = show_dir
