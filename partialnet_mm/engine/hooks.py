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
