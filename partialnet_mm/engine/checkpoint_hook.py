"""Checkpoints that a crash or a full disk cannot leave broken."""
import os
import os.path as osp
from typing import Callable, List

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


class CheckpointSaveError(OSError):
    """Saving a checkpoint failed; what was saved before is intact (the message says where)."""


def _sync_file(path: str) -> None:
    """Flush ``path``'s data to the disk (before it is renamed into place)."""
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def temporary_path(filepath: str) -> str:
    """Where :class:`AtomicLocalBackend` writes ``filepath`` before renaming it: a hidden
    ``.<name>.part`` file in the same folder (a rename within one file system is atomic)."""
    folder, name = osp.split(filepath)
    return osp.join(folder, f'.{name}.part')


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` never leaves a partial file in place.

    The data go to :func:`temporary_path`, are flushed to the disk and the file is renamed
    into place: a path holds a complete file or none. A failed write removes the temporary
    file and raises an ``OSError`` naming the path that was being written.
    """

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        temp = temporary_path(filepath)
        try:
            super().put(obj, temp)
            _sync_file(temp)
            os.replace(temp, filepath)
        except BaseException as err:
            if osp.exists(temp):
                os.remove(temp)
            if isinstance(err, OSError) and not isinstance(err, CheckpointSaveError):
                raise OSError(err.errno, err.strerror or str(err), filepath) from err
            raise


ATOMIC_BACKEND = 'partialnet_atomic_local'
register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


class _RemovalsAfterSave:
    """The hook's file backend during one save: removals (of outdated or previous-best
    checkpoints) are recorded and carried out by :meth:`apply` once the save succeeded;
    everything else goes to the real backend."""

    def __init__(self, backend):
        self._backend = backend
        self.pending: List[str] = []

    def remove(self, filepath) -> None:
        self.pending.append(str(filepath))

    def rmtree(self, dir_path) -> None:
        self.pending.append(str(dir_path))

    def apply(self) -> None:
        for path in self.pending:
            if self._backend.isfile(path):
                self._backend.remove(path)
            elif self._backend.isdir(path):
                self._backend.rmtree(path)

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` whose saves never destroy the last good checkpoint.

    Everything is mmengine's own hook (arguments, which checkpoints are saved and kept,
    ``save_best``, the message-hub entries, ``last_checkpoint``); for a local ``out_dir``
    (no ``backend_args`` / ``file_client_args``) two things about the files differ:

    * each checkpoint (``best_*`` ones too) is written by :class:`AtomicLocalBackend`: a
      temporary file in the same folder, flushed to the disk and renamed into place, so a kill
      or a full disk mid-write never leaves a truncated checkpoint at a checkpoint's path;
    * the checkpoints mmengine removes around a save (``max_keep_ckpts``, the previous best)
      are removed only after the new one is in place. mmengine removes them first, so a failed
      save with ``max_keep_ckpts=1`` would leave no checkpoint at all and ``last_checkpoint``
      naming a deleted file.

    A failed save (``No space left on device``, say) raises :class:`CheckpointSaveError`
    naming the checkpoint and the ``last_checkpoint`` that are still valid. mmengine writes
    ``last_checkpoint`` itself, after the checkpoint is in place. Other storage backends behave
    as in mmengine.
    """

    _removals = None  # the _RemovalsAfterSave of the save in progress

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._atomically(runner, super()._save_checkpoint_with_step, runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics):
        self._atomically(runner, super()._save_best_checkpoint, runner, metrics)

    def _is_local(self) -> bool:
        return (self.file_client_args is None and self.backend_args is None
                and isinstance(self.file_backend, LocalBackend))

    def _atomically(self, runner, save: Callable, *args) -> None:
        """Run one of mmengine's save methods with atomic writes and deferred removals
        (``_save_best_checkpoint`` calls ``_save_checkpoint_with_step`` inside: one save)."""
        if self._removals is not None or not self._is_local():
            return save(*args)
        backend, self._removals = self.file_backend, _RemovalsAfterSave(self.file_backend)
        self.file_backend, self.backend_args = self._removals, dict(backend=ATOMIC_BACKEND)
        try:
            save(*args)
            self._removals.apply()
        except OSError as err:
            raise CheckpointSaveError(self._failure_message(runner, err)) from err
        finally:
            self.file_backend, self.backend_args, self._removals = backend, None, None

    @staticmethod
    def _failure_message(runner, err: OSError) -> str:
        marker = osp.join(runner.work_dir, 'last_checkpoint')
        previous = open(marker).read().strip() if osp.isfile(marker) else None
        return (f'saving checkpoint {err.filename or ""} failed ({err.strerror or err}); '
                f'nothing of it was kept. '
                + (f'The previous checkpoint {previous} and {marker} are unchanged: free '
                   f'space and continue with --resume.' if previous else
                   'No earlier checkpoint of this run exists.'))
