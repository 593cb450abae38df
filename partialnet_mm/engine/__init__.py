from .distributed import CPUDistributedDataParallel, CPUSyncBatchNorm
from .hooks import (NonFiniteLossError, NonFiniteLossHook, RandomStateHook,
                    TrainCropScaleHook)

__all__ = [
    'TrainCropScaleHook', 'RandomStateHook', 'NonFiniteLossHook', 'NonFiniteLossError',
    'CPUDistributedDataParallel', 'CPUSyncBatchNorm'
]
