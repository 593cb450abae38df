"""Distributed training without GPUs: gloo process group, CPU DDP and a CPU SyncBN.

torch's ``SyncBatchNorm`` refuses CPU tensors and mmengine's launcher and DDP wrapper assume
one GPU per process. :func:`init_cpu_distributed` and :class:`CPUDistributedDataParallel`
make ``torchrun`` / ``tools/dist_train.sh`` work on CPUs, SyncBN included.
"""
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.distributed.nn.functional import all_reduce

from ..models.utils.ops import PoolsAcrossProcesses


class CPUSyncBatchNorm(PoolsAcrossProcesses, nn.BatchNorm2d):
    """Batch norm whose training statistics cover the batches of all processes (any backend).

    The per-channel sums of ``x`` and ``x**2`` and the element counts are summed over the
    process group with the differentiable ``all_reduce``, so autograd also synchronises the
    backward pass. Outside distributed training, or in eval mode, it is plain batch norm.
    Not a subclass of ``nn.SyncBatchNorm`` (DDP refuses those on CPU modules); it says that
    it pools statistics across processes by subclassing ``PoolsAcrossProcesses``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        stats = all_reduce(stats)
        channels = x.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = stats[channels:2 * channels] / total - mean * mean
        with torch.no_grad():
            if self.track_running_stats:
                self.num_batches_tracked.add_(1)
                momentum = self._momentum()
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = (1, channels, 1, 1)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def _momentum(self) -> float:
        """The running-statistics momentum (cumulative average when ``momentum`` is None)."""
        if self.momentum is not None:
            return self.momentum
        return 1. / max(float(self.num_batches_tracked), 1.)


def convert_sync_batchnorm_for_cpu(module: nn.Module) -> nn.Module:
    """Replace every torch ``SyncBatchNorm`` in ``module`` by :class:`CPUSyncBatchNorm`."""
    if isinstance(module, nn.SyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum,
                               module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for p_new, p_old in zip(new.parameters(), module.parameters()):
            p_new.requires_grad = p_old.requires_grad
        return new
    for name, child in module.named_children():
        converted = convert_sync_batchnorm_for_cpu(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU processes: no device ids, SyncBN made CPU-capable.

    Args:
        module (nn.Module): The model.
        **kwargs: Passed to :class:`MMDistributedDataParallel` (``device_ids`` is ignored:
            CPU modules take none).
    """

    def __init__(self, module: nn.Module, **kwargs):
        kwargs.pop('device_ids', None)
        kwargs.pop('output_device', None)
        super().__init__(module=convert_sync_batchnorm_for_cpu(module), device_ids=None,
                         **kwargs)


def init_cpu_distributed() -> None:
    """Join the torchrun process group with gloo (mmengine's launcher needs CUDA)."""
    if dist.is_initialized():
        return
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs torchrun\'s environment ({missing} '
                           f'missing): start with tools/dist_train.sh or torchrun')
    dist.init_process_group(backend='gloo')
