"""The project's own training hooks, for what the stack's hooks do not do.

The configs put them in ``custom_hooks``; the rest of a run uses the libraries' own hooks
(e.g. mmpretrain's ``SwitchRecipeHook`` for the 192 -> 224 px switch of the ImageNet recipe).
"""
import math
import os.path as osp
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _rng_snapshot() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _rng_restore(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Make a resumed run draw the same random numbers as an uninterrupted one.

    mmengine re-seeds on resume and has no hook that restores the generators, so dropout
    masks, drop-path and batch augmentations (Mixup, CutMix) after a resume differ from the
    run that was interrupted. This hook stores the Python, numpy and torch generator states
    in every checkpoint and restores them when training resumes from it. Validation inside
    training runs on a copy of the states, so it does not shift the training stream. With
    data-loader workers (``num_workers >= 1``) data augmentation runs in seeded worker
    processes and is reproduced by mmengine itself.

    In distributed runs the states of rank 0 only are saved and none is restored (each rank
    has its own generators); exact reproduction after a resume is for single-process runs.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._pending: Optional[dict] = None
        self._outside_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['rng_state'] = self._outside_val or _rng_snapshot()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get('rng_state')
        if state is None or not getattr(runner, '_resume', False):
            return
        if get_world_size() == 1:
            self._pending = state

    def before_train_epoch(self, runner) -> None:
        if self._pending is not None:
            _rng_restore(self._pending)
            self._pending = None
            runner.logger.info('RandomStateHook: restored the random state of the checkpoint')

    def before_val(self, runner) -> None:
        self._outside_val = _rng_snapshot()

    def after_val(self, runner) -> None:
        if self._outside_val is not None:
            _rng_restore(self._outside_val)
            self._outside_val = None


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """What mmdet's ``CheckInvalidLossHook`` does, with a message that says what to do, for
    every library.

    mmdet's hook stops with a bare ``AssertionError: loss become infinite or NaN!`` and is
    registered in mmdet's scope only. This one is registered in mmengine's root registry (and
    needs no mmdet), checks every iteration, runs before the checkpoint hook (so nothing
    computed from the broken state is saved: the last checkpoint on disk stays the last good
    one) and stops with :class:`NonFiniteLossError` naming the iteration, the loss terms, that
    last good checkpoint and the usual fixes.

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1):
        self.interval = interval

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or 'loss' not in outputs or not self.every_n_train_iters(
                runner, self.interval):
            return
        loss = float(outputs['loss'].detach() if hasattr(outputs['loss'], 'detach')
                     else outputs['loss'])
        if math.isfinite(loss):
            return
        last = osp.join(runner.work_dir, 'last_checkpoint')
        last_ckpt = open(last).read().strip() if osp.isfile(last) else None
        terms = {k: float(getattr(v, 'detach', lambda: v)()) for k, v in outputs.items()
                 if 'loss' in k}
        raise NonFiniteLossError(
            f'Training stopped: the loss became {loss} at iteration {runner.iter + 1} '
            f'(epoch {runner.epoch + 1}); loss terms: {terms}. Nothing from this state was '
            f'saved. '
            + (f'Last good checkpoint: {last_ckpt} (continue from it with --resume). '
               if last_ckpt else 'No checkpoint had been saved yet. ')
            + 'Try a lower learning rate, gradient clipping '
              '(optim_wrapper.clip_grad=dict(max_norm=...)) or check the data.')
