"""Heads for the libraries' models. Each extends its library's base class and exists where
that library is installed (:data:`partialnet_mm.libraries.LIBRARY_TYPES`); without it, the
name raises :class:`~partialnet_mm.libraries.MissingLibraryError` naming the extra."""
from ...libraries import LIBRARY_TYPES, is_installed, missing_library

__all__ = []
if is_installed(LIBRARY_TYPES['PartialNetClsHead']):
    from .partialnet_head import PartialNetClsHead  # noqa: F401
    __all__.append('PartialNetClsHead')


def __getattr__(name: str):
    if name in LIBRARY_TYPES:
        raise missing_library(LIBRARY_TYPES[name], name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
