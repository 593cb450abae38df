from .amp import AnyDeviceAmpOptimWrapper
from .aux_losses import attach_aux_losses
from .checkpoint_hook import AtomicCheckpointHook, CheckpointSaveError
from .distributed import CPUDistributedDataParallel, CPUSyncBatchNorm
from .hooks import NonFiniteLossError, NonFiniteLossHook, RandomStateHook
from .optimizers import PartialNetLayerDecayOptimWrapperConstructor

__all__ = [
    'AnyDeviceAmpOptimWrapper', 'attach_aux_losses', 'AtomicCheckpointHook', 'CheckpointSaveError',
    'CPUDistributedDataParallel', 'CPUSyncBatchNorm', 'NonFiniteLossError', 'NonFiniteLossHook',
    'PartialNetLayerDecayOptimWrapperConstructor', 'RandomStateHook'
]
