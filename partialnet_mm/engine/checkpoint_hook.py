"""Checkpoints that a crash or a full disk cannot leave broken."""
import os
import os.path as osp
from collections import deque

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


class CheckpointSaveError(OSError):
    """Saving a checkpoint failed; what was saved before is intact (the message says where)."""


def _sync_file(path: str) -> None:
    """Flush ``path``'s data to the disk (before it is renamed into place)."""
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def _replace_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    tmp = f'{path}.part'
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` whose saves never destroy the last good checkpoint.

    What mmengine's hook cannot do: it writes a checkpoint straight to its final path (a kill
    or a full disk mid-write leaves a truncated file there) and, with ``max_keep_ckpts``, it
    deletes the oldest checkpoint *before* saving the new one (a failed save then leaves
    ``last_checkpoint`` naming a deleted file). This hook, for local work dirs:

    * writes each checkpoint to a temporary file in the same folder, flushes it to the disk
      and renames it into place: a checkpoint path holds a complete file or none;
    * deletes outdated checkpoints and updates ``last_checkpoint`` (also atomically) only
      after the new checkpoint is in place;
    * turns a failed save (``No space left on device``, say) into
      :class:`CheckpointSaveError` naming the checkpoint and ``last_checkpoint`` that are
      still valid, after removing the partial file.

    Other storage backends (``backend_args`` or ``out_dir`` elsewhere) behave as in
    mmengine. Arguments are those of ``CheckpointHook``.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        filename = self.filename_tmpl.format(step)
        final = osp.join(self.out_dir, filename)
        temp_name = f'.{filename}.part'
        temp = osp.join(self.out_dir, temp_name)
        marker = osp.join(runner.work_dir, 'last_checkpoint')
        # the checkpoints kept after this save (recorded in the checkpoint's message hub)
        kept = list(self.keep_ckpt_ids)
        if self.max_keep_ckpts > 0 and (not kept or kept[-1] != step):
            kept.append(step)
        outdated = kept[:-self.max_keep_ckpts] if self.max_keep_ckpts > 0 else []
        kept = kept[len(outdated):]
        runner.message_hub.update_info('last_ckpt', final)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids', kept)
        try:
            runner.save_checkpoint(
                self.out_dir, temp_name, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
            if is_main_process():
                _sync_file(temp)
                os.replace(temp, final)
        except BaseException as err:
            if osp.exists(temp):
                os.remove(temp)
            if isinstance(err, OSError):
                previous = open(marker).read().strip() if osp.isfile(marker) else None
                raise CheckpointSaveError(
                    f'saving checkpoint {final} failed ({err}); nothing of it was kept. '
                    + (f'The previous checkpoint {previous} and {marker} are unchanged: '
                       f'free space and continue with --resume.' if previous else
                       'No earlier checkpoint of this run exists.')) from err
            raise
        self.last_ckpt = final
        if self.max_keep_ckpts > 0:
            self.keep_ckpt_ids = deque(kept, maxlen=self.max_keep_ckpts)
        if is_main_process():
            for old in outdated:
                path = osp.join(self.out_dir, self.filename_tmpl.format(old))
                if osp.isfile(path):
                    os.remove(path)
            _replace_text(marker, final)
