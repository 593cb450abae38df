"""Everything ``import partialnet_mm`` changes in the stack beyond registering its own modules.

Configs import the package through ``custom_imports``, so mmdet's, mmseg's and mmpretrain's
own tools get these too. The list is short on purpose; each entry says what fails without it
(``tests/test_environment.py`` shows each failure and its repair):

1. **torch's weights-only allow-list** (process-wide). torch >= 2.6 loads checkpoints with
   ``weights_only=True`` by default, and mmengine's checkpoints carry the message hub's
   ``HistoryBuffer`` objects; without this, ``--resume`` and mmdet's own ``tools/test.py``
   die with "Weights only load failed ... HistoryBuffer". Exactly those globals are allowed
   (:mod:`partialnet_mm.checkpoint.safe_globals`), code-carrying pickles are still refused.
2. **mmengine's loader for local checkpoint paths** (every model). The same weights-only
   ``torch.load`` as mmengine's own, but a refused file raises a
   :class:`~partialnet_mm.checkpoint.CheckpointError` that names the file and the refused
   object and says what to do, instead of torch's generic "Weights only load failed".

Not changed: how files are written. Atomic checkpoints are the project configs' choice
(``default_hooks.checkpoint.type='AtomicCheckpointHook'``), not a patch.
"""
import os
import pickle

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import CheckpointError, mmengine_safe_globals, refusal_reason


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's local checkpoint loader, weights-only, with a clear refusal message."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(refusal_reason(filename, err)) from None


def install() -> None:
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


install()
