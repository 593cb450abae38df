"""partialnet-mm: PartialNet backbones for MMDetection, MMSegmentation and MMPretrain.

Importing this package (``custom_imports=dict(imports=['partialnet_mm'])`` in a config)
registers its models (``PartialNet``, the spatial mixers, DPConv; ``PartialNetClsHead`` where
mmpretrain is installed), hooks and the CPU DDP wrapper in MMEngine's root registries, which
the mmdet, mmseg and mmpretrain registries inherit. It needs none of the three libraries and
imports none that is not installed (:mod:`partialnet_mm.libraries`). What else it changes in
the stack is listed in :mod:`partialnet_mm.compat`.
"""
from . import compat  # noqa: F401  (first: the allow-list before anything loads checkpoints)
from . import dpconv, engine  # noqa: F401  (register the DPConv mixer and the hooks)
from .runner import data_checks  # noqa: F401  (registers the CheckSegLabels transform)
from . import models
from .checkpoint import convert_state_dict, load_checkpoint_file
from .libraries import LIBRARY_TYPES
from .models import PartialNet, partialnet_channels, switch_to_deploy
from .version import __version__

__all__ = [
    '__version__', 'PartialNet', *models.heads.__all__, 'convert_state_dict',
    'load_checkpoint_file', 'partialnet_channels', 'switch_to_deploy'
]


def __getattr__(name: str):
    # PartialNetClsHead: there where mmpretrain is installed, else the error naming the extra
    if name in LIBRARY_TYPES:
        return getattr(models, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
