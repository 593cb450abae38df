"""The OpenMMLab libraries the plugin works with: each is optional, installed with its extra.

``pip install partialnet-mm`` installs torch, mmcv and mmengine, which the backbone, the
hooks, the transforms and the tools need; mmdet, mmseg and mmpretrain come with the extras
``[det]``, ``[seg]`` and ``[cls]`` (``[all]``: the three). ``import partialnet_mm`` registers
what the installed libraries allow and imports none that is missing: of its modules only
``PartialNetClsHead`` needs a library (mmpretrain, whose ``ClsHead`` it extends).

A config that needs a missing library stops where the project loads configs
(:func:`partialnet_mm.runner.load_config`) with :class:`MissingLibraryError`, which names the
extra to install.
"""
import importlib.util
from typing import Iterator, List, NamedTuple


class Library(NamedTuple):
    """An OpenMMLab library: its module (also its registry scope, a config's
    ``default_scope``), the distribution pip installs and the extra of ours that pulls it in."""
    module: str
    distribution: str
    extra: str
    task: str


LIBRARIES = {lib.module: lib for lib in (
    Library('mmdet', 'mmdet', 'det', 'detection'),
    Library('mmseg', 'mmsegmentation', 'seg', 'segmentation'),
    Library('mmpretrain', 'mmpretrain', 'cls', 'classification'),
)}
# Models of ours that exist only where their library is installed (they extend its classes).
LIBRARY_TYPES = {'PartialNetClsHead': 'mmpretrain'}


class MissingLibraryError(ImportError):
    """A config or a model needs an OpenMMLab library that is not installed."""


def is_installed(module: str) -> bool:
    """Whether the library ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_library(module: str, needed_by: str) -> MissingLibraryError:
    """The error for ``needed_by`` (a config, a model) needing the missing ``module``."""
    lib = LIBRARIES[module]
    return MissingLibraryError(
        f'{needed_by} needs {lib.module} ({lib.task}), which is not installed. Install it with '
        f'the "{lib.extra}" extra: pip install "partialnet-mm[{lib.extra}]" (from a clone: '
        f'pip install -e ".[{lib.extra}]"; every library: "[all]")')


def require(module: str, needed_by: str) -> None:
    """Raise :class:`MissingLibraryError` if the library ``module`` is not installed."""
    if not is_installed(module):
        raise missing_library(module, needed_by)


def _walk(node) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def config_libraries(cfg) -> List[str]:
    """The libraries a config builds with, in the order it names them: its ``default_scope``,
    the modules of its ``custom_imports``, every ``_scope_`` and scoped type
    (``'mmdet.ResNet'``), and the library of each of our types that needs one."""
    found = []

    def add(name) -> None:
        if isinstance(name, str):
            module = name.split('.')[0]
            if module in LIBRARIES and module not in found:
                found.append(module)

    add(cfg.get('default_scope'))
    imports = (cfg.get('custom_imports') or {}).get('imports', [])
    for module in [imports] if isinstance(imports, str) else imports:
        add(module)
    for node in _walk(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)):
        add(node.get('_scope_'))
        kind = node.get('type')
        if isinstance(kind, str):
            if '.' in kind:
                add(kind)
            elif kind in LIBRARY_TYPES:
                add(LIBRARY_TYPES[kind])
    return found


def check_config_libraries(cfg, config: str) -> None:
    """Raise :class:`MissingLibraryError` naming the extra to install if the config ``config``
    needs a library that is not installed."""
    for module in config_libraries(cfg):
        require(module, f'config {config}')
