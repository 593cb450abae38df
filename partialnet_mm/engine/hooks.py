"""Training hooks used by the configs."""
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class TrainCropScaleHook(Hook):
    """Change the output size of the training crop at given epochs (progressive resizing).

    The authors train ImageNet classifiers at 192 px and switch to 224 px for the last
    epochs. This hook sets the ``scale`` of every ``RandomResizedCrop`` in the training
    pipeline, so the rest of the pipeline is written once.

    Args:
        schedule (dict[int, int]): ``{epoch: scale}``; from 0-based ``epoch`` on, crops are
            ``scale`` x ``scale``. E.g. ``{280: 224}`` with a 192 px pipeline.
    """

    priority = 'NORMAL'

    def __init__(self, schedule: Dict[int, int]):
        if not schedule:
            raise ValueError('TrainCropScaleHook needs a non-empty schedule {epoch: scale}')
        self.schedule = {int(k): int(v) for k, v in schedule.items()}
        self._current: Optional[int] = None

    def _scale_for(self, epoch: int) -> Optional[int]:
        passed = [e for e in self.schedule if e <= epoch]
        return self.schedule[max(passed)] if passed else None

    def before_train_epoch(self, runner) -> None:
        scale = self._scale_for(runner.epoch)
        if scale is None or scale == self._current:
            return
        loader = runner.train_loop.dataloader
        crops = [t for t in _pipeline_transforms(loader.dataset)
                 if type(t).__name__ == 'RandomResizedCrop']
        if not crops:
            raise RuntimeError('TrainCropScaleHook: the training pipeline has no '
                               'RandomResizedCrop to resize')
        for crop in crops:
            crop.scale = (scale, scale)
        loader._iterator = None  # restart persistent workers with the new pipeline
        self._current = scale
        runner.logger.info(f'TrainCropScaleHook: training crops are {scale}x{scale} from '
                           f'epoch {runner.epoch}')


def _pipeline_transforms(dataset):
    if hasattr(dataset, 'pipeline'):
        return list(dataset.pipeline.transforms)
    if hasattr(dataset, 'datasets'):
        return [t for d in dataset.datasets for t in _pipeline_transforms(d)]
    if hasattr(dataset, 'dataset'):
        return _pipeline_transforms(dataset.dataset)
    raise RuntimeError(f'cannot find the pipeline of {type(dataset).__name__}')


def _rng_snapshot() -> dict:
    import random

    import numpy as np
    import torch
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _rng_restore(state: dict) -> None:
    import random

    import numpy as np
    import torch
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Make a resumed run draw the same random numbers as an uninterrupted one.

    mmengine re-seeds on resume, so dropout masks, drop-path and batch augmentations (Mixup,
    CutMix) after a resume differ from the run that was interrupted. This hook stores the
    Python, numpy and torch generator states in every checkpoint and restores them when
    training resumes from it. Validation inside training runs on a copy of the states, so it
    does not shift the training stream. With data-loader workers (``num_workers >= 1``) data
    augmentation runs in seeded worker processes and is reproduced by mmengine itself.

    In distributed runs the states of rank 0 only are saved; other ranks are not restored.
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
        from mmengine.dist import get_world_size
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
    """Stop training, with a clear message, as soon as the loss is NaN or infinite.

    Runs before the checkpoint hook in ``after_train_iter``, so nothing computed from the
    broken state is ever saved: the last checkpoint on disk stays the last good one.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        import math
        if not outputs or 'loss' not in outputs:
            return
        loss = float(outputs['loss'].detach() if hasattr(outputs['loss'], 'detach')
                     else outputs['loss'])
        if math.isfinite(loss):
            return
        import os.path as osp
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
