"""Dataset problems found before training starts, each named with its fix."""
import contextlib
import json
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


def join_root(root: str, path: str) -> str:
    """``path`` under a dataset's ``data_root`` (an absolute ``path`` stays as it is)."""
    return path if osp.isabs(path) or not root else osp.join(root, path)


def dataset_configs(cfg, loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    """``(loader, leaf dataset config)`` of each of ``loaders`` the config has."""
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if loader_cfg:
            for ds in _dataset_cfgs(loader_cfg.get('dataset')):
                yield loader, ds


def dataset_paths(cfg, loaders: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``(loader, kind, path)`` for each data root, annotation file and image folder."""
    paths = []
    for loader, ds in dataset_configs(cfg, loaders):
        root = ds.get('data_root') or ''
        if root:
            paths.append((loader, 'data root', root))
        if ds.get('ann_file'):
            paths.append((loader, 'annotation file', join_root(root, ds['ann_file'])))
        prefix = ds.get('data_prefix') or {}
        if isinstance(prefix, str):
            prefix = dict(img=prefix)
        for value in prefix.values():
            if isinstance(value, str) and value:
                paths.append((loader, 'image/label folder', join_root(root, value)))
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
    """Turn a corrupt/truncated annotation JSON into a message that names the file, and a
    :class:`DataError` raised in a data-loader worker into its own message (without the
    worker's traceback)."""
    try:
        yield
    except DataError as err:
        text, marker = str(err), 'DataError: '
        if 'DataLoader worker' in text and marker in text:
            raise DataError(text[text.rindex(marker) + len(marker):].strip()) from None
        raise
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


def data_root_options(data_root: str, evaluator_ann: Optional[str] = None) -> List[str]:
    """``--cfg-options`` pointing every dataloader (and a COCO evaluator) at ``data_root``."""
    options = [f'{loader}.dataset.data_root={data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if evaluator_ann:
        options += [f'{ev}.ann_file={evaluator_ann}' for ev in ('val_evaluator', 'test_evaluator')]
    return options
