"""Glue for the pinned OpenMMLab stack (mmengine 0.10.7 / mmcv 2.1.0 on torch >= 2.6).

Imported by ``partialnet_mm/__init__.py``, so every config with
``custom_imports=dict(imports=['partialnet_mm'])`` gets it, also under mmdet's, mmseg's and
mmpretrain's own tools. Each piece says what fails without it; ``tests/test_environment.py``
shows each failure and its repair.

1. Safe checkpoint loading. torch >= 2.6 loads with ``weights_only=True`` by default, and
   mmengine's checkpoints carry more than tensors: the message hub's ``HistoryBuffer``
   objects (numpy arrays inside, and their statistics methods pickled as
   ``getattr(HistoryBuffer, 'min')``). Without this, ``--resume`` and mmdet's own
   ``tools/test.py`` die with "Weights only load failed ... HistoryBuffer". We keep
   ``weights_only=True`` and allow-list exactly those globals. ``builtins.getattr`` is *not*
   allowed as such: the name resolves to :func:`_history_buffer_getattr`, which hands out
   the four statistics methods of ``HistoryBuffer`` and refuses everything else.
2. A clear refusal. mmengine loads local checkpoints through ``CheckpointLoader``; our
   loader for local paths (registered for mmengine's default scheme) keeps
   ``weights_only=True`` and turns torch's generic "Weights only load failed" into a message
   that names the file and the refused object, and says what to do.
3. Atomic checkpoint files. mmengine writes a checkpoint straight to its final path, so a
   run killed while saving leaves a truncated file that ``--resume`` then trips over.
   :func:`_atomic_put` writes to a temporary file in the same folder, syncs it and renames
   it into place: a checkpoint path holds a complete file or none.
"""
import os
import pickle
import tempfile

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """``getattr`` restricted to what an mmengine checkpoint references."""
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(obj, "__qualname__", type(obj).__name__)}, {name!r}) '
        f'while loading a checkpoint with weights_only=True: only '
        f'HistoryBuffer.{{{",".join(HISTORY_BUFFER_STATISTICS)}}} are allowed')


def mmengine_safe_globals():
    """The globals an mmengine Runner checkpoint needs, for ``add_safe_globals``.

    numpy's array/scalar reconstructors are registered under both their numpy 2
    (``numpy._core``) and numpy 1 (``numpy.core``) names, so checkpoints saved under either
    numpy load under the other. numpy >= 1.25 also needs the classes of the (numeric and
    bool) dtypes the logged arrays and scalars use; object dtype is not allowed.
    """
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe = [HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_getattr, 'builtins.getattr')]
    safe += sorted({type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'} - {np.dtype},
                   key=lambda t: t.__name__)
    for core in ('numpy._core', 'numpy.core'):
        safe.append((multiarray._reconstruct, f'{core}.multiarray._reconstruct'))
        safe.append((multiarray.scalar, f'{core}.multiarray.scalar'))
    return safe


def allow_mmengine_checkpoints():
    """Allow-list :func:`mmengine_safe_globals` for ``torch.load(weights_only=True)``."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's local checkpoint loader, weights-only, with a clear refusal message."""
    from .checkpoint import CheckpointError, refusal_reason
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(refusal_reason(filename, err)) from None


def _atomic_put(self, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` writing through a temporary file and an atomic rename."""
    filepath = str(filepath)
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(filepath) + '.',
                               suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def install():
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    allow_mmengine_checkpoints()
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    LocalBackend.put = _atomic_put


install()
