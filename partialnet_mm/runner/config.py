"""Loading configs (also ``mmdet::...`` paths) and the library (registry scope) they belong to."""
import contextlib
import difflib
import importlib.util
import os
import os.path as osp
from argparse import ArgumentParser
from typing import Dict, Optional, Sequence, Union

from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope

from ..libraries import LIBRARIES, check_config_libraries, is_installed, missing_library


def load_config(path: str, cfg_options: Optional[Union[dict, Sequence[str]]] = None) -> Config:
    """``Config.fromfile``, also for ``'mmdet::mask_rcnn/....py'``-style paths, with
    ``cfg_options`` (a dict, or ``key=value`` strings as ``--cfg-options`` takes) merged in.

    A config of a library that is not installed (its ``mmdet::`` bases, its
    ``default_scope``, ...) raises :class:`~partialnet_mm.libraries.MissingLibraryError`,
    which names the extra to install.

    Args:
        path (str): A config file, or ``<package>::<path inside its configs>`` of an
            installed OpenMMLab package (as in ``_base_`` lists).
        cfg_options (dict | list[str], optional): Overrides.
    """
    if '::' in path:
        path = installed_config_path(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} not found')
    try:
        cfg = Config.fromfile(path)
    except ImportError as err:
        # mmengine stops at the first `<library>::` base of a library that is missing
        # ("mmdet is not installed, please install mmdet manually")
        for lib in LIBRARIES.values():
            if not is_installed(lib.module) and (lib.module in str(err)
                                                 or lib.distribution in str(err)):
                raise missing_library(lib.module, f'config {path}') from err
        raise
    options = parse_cfg_options(cfg_options)
    if options:
        cfg.merge_from_dict(options)
    check_config_libraries(cfg, path)
    return cfg


def parse_cfg_options(options: Optional[Union[dict, Sequence[str]]]) -> Dict:
    """``--cfg-options`` values as a dict: ``['a.b=1', 'c=[1,2]']`` -> ``{'a.b': 1, ...}``
    (mmengine's ``DictAction`` parsing); a dict is returned as it is."""
    if not options:
        return {}
    if isinstance(options, dict):
        return dict(options)
    parser = ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *[str(o) for o in options]]).cfg_options


def installed_config_path(path: str) -> str:
    """The file of ``'<module>::<path>'`` inside an installed package's configs.

    mmengine resolves this syntax in ``_base_`` lists only (and its helper rejects paths with
    hyphens, such as ``mask-rcnn/...``); this looks in ``<module>/.mim/configs`` (pip
    installs) and ``<module>/../configs`` (source checkouts).
    """
    module, rel_path = path.split('::', 1)
    if module in LIBRARIES and not is_installed(module):
        raise missing_library(module, f'config {path!r}')
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f'config {path!r}: package {module!r} is not installed')
    root = osp.dirname(spec.origin)
    candidates = [osp.join(root, '.mim', 'configs', rel_path),
                  osp.join(osp.dirname(root), 'configs', rel_path)]
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    hint = ''
    configs_root = next((osp.dirname(osp.dirname(c)) for c in candidates
                         if osp.isdir(osp.dirname(osp.dirname(c)))), None)
    folder = rel_path.split('/', 1)[0]
    if configs_root and '/' in rel_path:
        close = difflib.get_close_matches(folder, os.listdir(configs_root), n=1)
        if close:
            hint = f'; did you mean {module}::{close[0]}/{rel_path.split("/", 1)[1]}?'
    raise FileNotFoundError(f'config {path!r} not found in the installed {module} '
                            f'(looked at {candidates}){hint}')


def config_scope(cfg) -> str:
    """The library a config belongs to (its ``default_scope``; mmengine if none)."""
    return cfg.get('default_scope') or 'mmengine'


@contextlib.contextmanager
def scope_of(cfg_or_scope):
    """Make a config's library the default registry scope inside the block."""
    scope = cfg_or_scope if isinstance(cfg_or_scope, str) else config_scope(cfg_or_scope)
    with DefaultScope.overwrite_default_scope(scope):
        yield


PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def project_file(rel_path: str) -> str:
    """A file the project ships (``configs/...``, ``tools/...``): in the source checkout, or
    in the installed package's ``.mim`` folder (``pip install .`` without a clone)."""
    for root in (osp.dirname(PACKAGE_DIR), osp.join(PACKAGE_DIR, '.mim')):
        if osp.exists(osp.join(root, rel_path)):
            return osp.join(root, rel_path)
    raise FileNotFoundError(f'{rel_path} is neither in a partialnet-mm checkout nor in the '
                            f'installed package ({PACKAGE_DIR}/.mim); reinstall it with '
                            f'`pip install .`')
