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
"""
import pickle

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


allow_mmengine_checkpoints()
