"""partialnet-mm: PartialNet backbones for MMDetection, MMSegmentation and MMPretrain."""
from . import compat  # noqa: F401  (first: glue the stack before anything loads checkpoints)
from .version import __version__

__all__ = ['__version__']
