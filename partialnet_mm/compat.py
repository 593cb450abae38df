"""Everything ``import partialnet_mm`` changes in the stack beyond registering its own modules.

Configs import the package through ``custom_imports``, so mmdet's, mmseg's and mmpretrain's
own tools get these too. The list is short on purpose; each entry says what fails without it
(``tests/test_environment.py`` shows each failure and its repair):

1. **torch's weights-only allow-list** (process-wide). torch >= 2.6 loads checkpoints with
   ``weights_only=True`` by default, and mmengine's checkpoints carry the message hub's
   ``HistoryBuffer`` objects; without this, ``--resume`` and mmdet's own ``tools/test.py``
   die with "Weights only load failed ... HistoryBuffer". Exactly those globals are allowed
   (:mod:`partialnet_mm.checkpoint.safe_globals`), code-carrying pickles are still refused.
2. **mmengine's loader for local checkpoint paths** (every model: ``init_cfg`` Pretrained,
   ``load_from``, ``--resume``). The same weights-only ``torch.load`` as mmengine's own, but
   a refused, damaged or foreign file raises a
   :class:`~partialnet_mm.checkpoint.CheckpointError` that names the file, the cause and what
   to do (:func:`~partialnet_mm.checkpoint.load_checkpoint_file`), instead of torch's generic
   "Weights only load failed", "PytorchStreamReader failed reading zip archive" or a bare
   ``EOFError``.

Not changed: how files are written. Atomic checkpoints are the project configs' choice
(``default_hooks.checkpoint.type='AtomicCheckpointHook'``), not a patch.
"""
import os

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import load_checkpoint_file, mmengine_safe_globals


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's local checkpoint loader, weights-only, with clear messages for a refused,
    damaged or foreign file."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_file(filename, map_location=map_location)


def install() -> None:
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


install()
