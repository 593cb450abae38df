"""partialnet-mm: PartialNet backbones for MMDetection, MMSegmentation and MMPretrain.

Importing this package (``custom_imports=dict(imports=['partialnet_mm'])`` in a config)
registers every model in MMEngine's root ``MODELS`` registry, which the mmdet, mmseg and
mmpretrain registries inherit, and applies the stack glue in :mod:`partialnet_mm.compat`.
"""
from . import compat  # noqa: F401  (first: glue the stack before anything loads checkpoints)
from . import engine  # noqa: F401  (registers hooks)
from .checkpoint import convert_state_dict, load_checkpoint_file
from .models import PartialNet, PartialNetClsHead, partialnet_channels
from .version import __version__

__all__ = [
    '__version__', 'PartialNet', 'PartialNetClsHead', 'partialnet_channels',
    'convert_state_dict', 'load_checkpoint_file'
]
