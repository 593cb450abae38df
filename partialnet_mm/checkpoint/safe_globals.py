"""What an mmengine Runner checkpoint needs on torch's ``weights_only=True`` allow-list.

mmengine's checkpoints carry more than tensors: the message hub's ``HistoryBuffer`` objects
(numpy arrays inside, their statistics methods pickled as ``getattr(HistoryBuffer, 'min')``
and, for an empty buffer, a zero-length array whose data pickles as ``bytes()``). Exactly
those globals are allowed; each callable among them is a narrow stand-in that refuses every
other use, so the allow-list opens no door to running code.
"""
import pickle

import numpy as np
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


def _empty_bytes(*args):
    """``bytes()``: pickle protocol 2 writes an empty bytes object (the data of a zero-length
    numpy array) as a call of ``bytes`` without arguments; any other call is refused."""
    if args:
        raise pickle.UnpicklingError(
            f'refusing bytes{args!r} while loading a checkpoint with weights_only=True: only '
            f'bytes() (an empty array\'s data) is allowed')
    return b''


def mmengine_safe_globals() -> list:
    """The globals an mmengine Runner checkpoint needs, for ``add_safe_globals``.

    numpy's array/scalar reconstructors are registered under both their numpy 2
    (``numpy._core``) and numpy 1 (``numpy.core``) names, so checkpoints saved under either
    numpy load under the other. numpy >= 1.25 also needs the classes of the (numeric and
    bool) dtypes the logged arrays and scalars use; object dtype is not allowed.
    """
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe = [HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_getattr, 'builtins.getattr'),
            (_empty_bytes, 'builtins.bytes')]
    safe += sorted({type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'} - {np.dtype},
                   key=lambda t: t.__name__)
    for core in ('numpy._core', 'numpy.core'):
        safe.append((multiarray._reconstruct, f'{core}.multiarray._reconstruct'))
        safe.append((multiarray.scalar, f'{core}.multiarray.scalar'))
    return safe
