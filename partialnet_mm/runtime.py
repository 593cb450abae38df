"""What our ``tools/train.py`` and ``tools/test.py`` add around mmengine's Runner.

* :func:`check_datasets`: every dataset a run needs exists, else one message saying where the
  data must be and how to point the config elsewhere (no traceback);
* :func:`explain_data_errors`: a corrupt or truncated annotation file named as such;
* :func:`enable_visualization`: ``--show-dir`` for mmdet, mmseg and mmpretrain configs alike;
* :func:`fp32_without_gpu`: AMP configs train in fp32 on a machine without a GPU;
* :func:`find_resume_checkpoint`: ``--resume`` picks the newest *complete* checkpoint;
* :func:`setup_cpu_distributed`: ``torchrun`` on CPUs (gloo, CPU DDP, CPU SyncBN);
* :func:`data_root_options`: ``--cfg-options`` that move a config to another data root.
"""
import contextlib
import json
import os
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

DEMO_HINT = 'python tools/make_demo_data.py'


class DataError(RuntimeError):
    """A dataset problem the user must fix; the message says what and how."""


def _dataset_cfgs(dataset_cfg) -> Iterator[dict]:
    """Leaf dataset configs inside wrappers (RepeatDataset, ConcatDataset, ...)."""
    if dataset_cfg is None:
        return
    if isinstance(dataset_cfg, (list, tuple)):
        for d in dataset_cfg:
            yield from _dataset_cfgs(d)
        return
    if 'dataset' in dataset_cfg:
        yield from _dataset_cfgs(dataset_cfg['dataset'])
    elif 'datasets' in dataset_cfg:
        yield from _dataset_cfgs(dataset_cfg['datasets'])
    else:
        yield dataset_cfg


def _join(root: str, path: str) -> str:
    return path if osp.isabs(path) or not root else osp.join(root, path)


def dataset_paths(cfg, loaders: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``(loader, kind, path)`` for each data root, annotation file and image folder."""
    paths = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds in _dataset_cfgs(loader_cfg.get('dataset')):
            root = ds.get('data_root') or ''
            if root:
                paths.append((loader, 'data root', root))
            if ds.get('ann_file'):
                paths.append((loader, 'annotation file', _join(root, ds['ann_file'])))
            prefix = ds.get('data_prefix') or {}
            if isinstance(prefix, str):
                prefix = dict(img=prefix)
            for value in prefix.values():
                if isinstance(value, str) and value:
                    paths.append((loader, 'image/label folder', _join(root, value)))
    return paths


def check_datasets(cfg, loaders: Sequence[str], config_path: str = '') -> None:
    """Raise :class:`DataError` naming every missing dataset path, with the fix."""
    missing = [(loader, kind, path) for loader, kind, path in dataset_paths(cfg, loaders)
               if '://' not in path and not osp.exists(path)]
    if not missing:
        return
    roots = sorted({p for _, kind, p in missing if kind == 'data root'})
    lines = [f'Dataset not found for {config_path or "this config"}:']
    lines += [f'  {loader}: {kind} {path!r} does not exist' for loader, kind, path in missing]
    demo = any('demo' in p for _, _, p in missing)
    if demo:
        lines.append(f'This is an embedded demo set: generate it with `{DEMO_HINT}`.')
    else:
        root = roots[0] if roots else osp.dirname(missing[0][2])
        lines.append(f'Put the dataset at {root!r} (relative to the directory you run from; a '
                     f'symlink works: ln -s /path/to/dataset {root.rstrip("/")}), or point the '
                     f'config at it, e.g. --cfg-options '
                     + ' '.join(f'{loader}.dataset.data_root=/path/to/dataset/'
                                for loader in sorted({m[0] for m in missing})))
    raise DataError('\n'.join(lines))


@contextlib.contextmanager
def explain_data_errors(cfg, loaders: Sequence[str]):
    """Turn a corrupt/truncated annotation JSON into a message that names the file."""
    try:
        yield
    except json.JSONDecodeError as err:
        bad = []
        for _, kind, path in dataset_paths(cfg, loaders):
            if kind == 'annotation file' and path.endswith('.json') and osp.isfile(path):
                try:
                    with open(path) as f:
                        json.load(f)
                except ValueError as e:
                    bad.append(f'{path} ({e})')
        where = '; '.join(bad) if bad else f'an annotation file ({err})'
        raise DataError(f'Corrupt or truncated annotation JSON: {where}. Re-download or '
                        f're-generate it (demo sets: `{DEMO_HINT} --force`).') from None


def own_visualizer(cfg) -> None:
    """Give this run its own visualizer when an earlier run in this process took its name.

    mmdet's and mmseg's ``default_runtime`` name the visualizer ``'visualizer'`` and mmengine
    builds it with ``get_instance``, which hands back an existing instance of that name, with
    the earlier run's ``save_dir``. A second train/test in one process (the tests,
    ``tools/learning_benchmark.py``, a notebook) would write its scalars and drawings into the
    first run's work dir. A run that is first keeps the config's name.
    """
    from mmengine.visualization import Visualizer
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


def fp32_without_gpu(cfg) -> bool:
    """Train an AMP config in fp32 when no GPU is there (mmengine's AMP wrapper needs one).

    Returns True (after one warning) if the optimizer wrapper was switched.
    """
    import warnings

    import torch
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') != 'AmpOptimWrapper' or torch.cuda.is_available():
        return False
    wrapper['type'] = 'OptimWrapper'
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        wrapper.pop(key, None)
    warnings.warn('No GPU: this config asks for mixed precision (AmpOptimWrapper), which '
                  'needs a GPU; training in fp32 with OptimWrapper instead.')
    return True


def is_complete_checkpoint(path: str) -> bool:
    """True for a checkpoint file torch can open: a zip archive with its directory written
    (the directory is written last, so a file cut short by a crash fails this)."""
    import zipfile
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from.

    The one named in ``work_dir/last_checkpoint`` if it is complete, else the newest
    complete ``*.pth`` in ``work_dir`` (with a warning saying so), else None.
    """
    import glob
    import warnings
    named = ''
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
    if named and is_complete_checkpoint(named):
        return named
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime, reverse=True)
    for candidate in candidates:
        if is_complete_checkpoint(candidate):
            if named or osp.isfile(marker):
                warnings.warn(f'{marker} names {named!r}, which is missing or incomplete; '
                              f'resuming from {candidate} instead')
            return candidate
    return None


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Make a distributed launch work without GPUs; True if it did anything.

    mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` and wraps the model in DDP
    with ``device_ids=[LOCAL_RANK]``; both need GPUs. Without CUDA we join the process group
    with gloo ourselves (mmengine then skips its own initialisation) and wrap the model in
    :class:`~partialnet_mm.engine.distributed.CPUDistributedDataParallel`, which also makes
    SyncBN layers work on CPU.
    """
    import torch
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise DataError(f'--launcher {launcher} needs GPUs here; on CPUs launch with torchrun '
                        f'(tools/dist_train.sh / tools/dist_test.sh)')
    from .engine.distributed import init_cpu_distributed
    init_cpu_distributed()
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True


def data_root_options(data_root: str, evaluator_ann: Optional[str] = None) -> List[str]:
    """``--cfg-options`` pointing every dataloader (and a COCO evaluator) at ``data_root``."""
    options = [f'{loader}.dataset.data_root={data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if evaluator_ann:
        options += [f'{ev}.ann_file={evaluator_ann}' for ev in ('val_evaluator', 'test_evaluator')]
    return options
