"""partialnet-mm: PartialNet backbones for MMDetection, MMSegmentation and MMPretrain.

Importing this package (``custom_imports=dict(imports=['partialnet_mm'])`` in a config)
registers its models (``PartialNet``, ``PartialNetClsHead``, the spatial mixers, DPConv), hooks
and the CPU DDP wrapper in MMEngine's root registries, which the mmdet, mmseg and mmpretrain
registries inherit. What else it changes in the stack is listed in :mod:`partialnet_mm.compat`.
"""
from . import compat  # noqa: F401  (first: the allow-list before anything loads checkpoints)
from . import dpconv, engine  # noqa: F401  (register the DPConv mixer and the hooks)
from .runner import data_checks  # noqa: F401  (registers the CheckSegLabels transform)
from .checkpoint import convert_state_dict, load_checkpoint_file
from .models import PartialNet, PartialNetClsHead, partialnet_channels, switch_to_deploy
from .version import __version__

__all__ = [
    '__version__', 'PartialNet', 'PartialNetClsHead',
    'convert_state_dict', 'load_checkpoint_file', 'partialnet_channels', 'switch_to_deploy'
]
