from .aux_losses import attach_aux_losses
from .distributed import CPUDistributedDataParallel, CPUSyncBatchNorm
from .dpconv_hook import DPConvHook
from .hooks import (NonFiniteLossError, NonFiniteLossHook, RandomStateHook,
                    TrainCropScaleHook)

__all__ = [
    'TrainCropScaleHook', 'RandomStateHook', 'NonFiniteLossHook', 'NonFiniteLossError',
    'CPUDistributedDataParallel', 'CPUSyncBatchNorm', 'DPConvHook', 'attach_aux_losses'
]
