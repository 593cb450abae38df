"""Tensor operations the layers share between their training and inference forms.

Each computes what a plain PyTorch expression computes (named in its docstring) with fewer
passes over memory or a faster kernel on the CPU; those used in training are differentiable
and give the same gradients up to float round-off.
"""
import math
from typing import Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .exporting import is_exporting


def is_channels_last(x: torch.Tensor) -> bool:
    """A 4-D tensor laid out channels-last (and not also plain contiguous)."""
    return x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last)


class _ChannelStdMean(torch.autograd.Function):
    """Unbiased std and mean over the positions of a (B, C, H, W) tensor, two-pass.

    Saves only the input and the two (B, C) results, as ``torch.std_mean`` does (autograd
    through the two-pass formula would also keep the centred copy of the input), and
    recomputes the centred values in the backward pass.
    """

    @staticmethod
    def forward(ctx, x):
        mean = x.mean((2, 3), keepdim=True)
        count = x.shape[2] * x.shape[3]
        std = torch.linalg.vector_norm(x - mean, dim=(2, 3)) / math.sqrt(count - 1)
        ctx.save_for_backward(x, mean, std)
        return std, mean.flatten(1)

    @staticmethod
    def backward(ctx, grad_std, grad_mean):
        x, mean, std = ctx.saved_tensors
        count = x.shape[2] * x.shape[3]
        # d std / dx = (x - mean) / ((n - 1) std), zero where std is zero (as std_mean);
        # d mean / dx = 1 / n
        scale = torch.where(std > 0, grad_std / (std * (count - 1)), torch.zeros_like(std))
        grad = (x - mean) * scale[:, :, None, None]
        return grad.add_((grad_mean / count)[:, :, None, None])


def channel_std_mean(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``torch.std_mean(x.flatten(2), dim=-1)``: unbiased std and mean over positions, (B, C).

    Two passes (the mean, then the norm of the centred values) instead of PyTorch's one-pass
    Welford kernel, which is about ten times slower on the CPU, reduced over the spatial
    dimensions in place (no flattening copy of a channels-last tensor). The two-pass formula
    is at least as accurate; the gradient is the same as ``std_mean``'s, computed by
    :class:`_ChannelStdMean` without keeping more than ``std_mean`` keeps.
    """
    if is_exporting():  # the size is symbolic there; the exported op is the same
        return torch.std_mean(x.flatten(2), dim=-1)
    return _ChannelStdMean.apply(x)


def pointwise_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a 1x1, stride-1, ungrouped convolution; differentiable.

    For an NCHW-contiguous CPU input this is one batched matrix product ``W @ x.view(B, C,
    H * W)``, up to ~4x faster than oneDNN's NCHW 1x1 convolution on the large early feature
    maps (e.g. 64 -> 128 channels at 56x56) and about as fast elsewhere; other inputs
    (channels-last, CUDA, exporting) use the convolution.
    """
    if x.device.type != 'cpu' or not x.is_contiguous() or is_exporting():
        return conv(x)
    batch, _, height, width = x.shape
    out = torch.matmul(conv.weight.flatten(1), x.flatten(2))
    if conv.bias is not None:
        out = out + conv.bias[:, None]
    return out.view(batch, -1, height, width)


def pointwise_conv_add(x: torch.Tensor, conv: nn.Conv2d,
                       residual: torch.Tensor) -> torch.Tensor:
    """``residual + conv(x)`` for inference: the residual is added into the fresh output."""
    if is_exporting():
        return residual + conv(x)
    if x.device.type != 'cpu' or not x.is_contiguous():
        return conv(x).add_(residual)
    batch, _, height, width = x.shape
    weight = conv.weight.flatten(1)
    out = torch.bmm(weight.expand(batch, *weight.shape), x.flatten(2))
    if conv.bias is not None:
        out.add_(conv.bias[:, None])
    out.add_(residual.reshape(out.shape))
    return out.view(batch, -1, height, width)


def add_drop_path(shortcut: torch.Tensor, x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """``shortcut + DropPath(drop_prob)(x)`` in training (mmcv's and timm's stochastic depth),
    as one ``addcmul``; differentiable.

    The same random draw as ``mmcv.cnn.bricks.drop.drop_path`` (so a seeded run drops the
    same samples), but one pass over ``x`` instead of three (divide, mask, add) and a backward
    that scales the gradient once instead of twice.
    """
    if drop_prob == 0.:
        return shortcut + x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    return torch.addcmul(shortcut, x, random_tensor.floor_().div_(keep_prob))


def activation_(x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """``act(x)`` written into ``x`` (a tensor the caller owns), for inference.

    A channels-last tensor is processed through its contiguous NHWC view (PyTorch's CPU GELU
    is markedly slower on channels-last strides). Activations other than GELU and ReLU are
    applied out of place.
    """
    if is_exporting():
        return act(x)
    flat = x.permute(0, 2, 3, 1) if is_channels_last(x) else x
    if isinstance(act, nn.GELU):
        torch.ops.aten.gelu_(flat, approximate=act.approximate)
    elif isinstance(act, nn.ReLU):
        torch.relu_(flat)
    else:
        return act(x)
    return x


class PoolsAcrossProcesses:
    """Base of a norm whose training statistics cover the batches of all processes, as
    ``nn.SyncBatchNorm``'s do, without being one (the project's CPU SyncBN, which DDP would
    refuse as an ``nn.SyncBatchNorm`` on CPU modules). :func:`sees_one_sample` reads it."""


def sees_one_sample(norm: nn.Module, x: torch.Tensor) -> bool:
    """Whether a BatchNorm in training would normalise ``x`` over a single value per channel.

    That happens for a (B, C, 1, 1) input with B = 1 in this process and no other process
    sharing the statistics (a SyncBN in a distributed run pools the batches of all of them).
    """
    if x[:, 0].numel() != 1:
        return False
    pools = isinstance(norm, (nn.SyncBatchNorm, PoolsAcrossProcesses))
    synced = (pools and dist.is_available() and dist.is_initialized()
              and dist.get_world_size() > 1)
    return not synced


def batch_norm_any_batch(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``; where training statistics would come from one sample, running ones instead.

    BatchNorm cannot normalise one value per channel (PyTorch raises "Expected more than 1
    value per channel when training"). For that case only, the layer normalises with its
    running statistics (as in evaluation) and leaves them unchanged; its affine parameters
    still learn. Batches of two or more, and evaluation, are plain ``norm(x)``.
    """
    if not (norm.training and isinstance(norm, _BatchNorm) and sees_one_sample(norm, x)):
        return norm(x)
    if norm.running_mean is None:
        raise ValueError(
            f'{type(norm).__name__} without running statistics cannot normalise a batch of '
            f'one pooled sample; train with two or more images per process or keep '
            f'track_running_stats=True')
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                        training=False, eps=norm.eps)


class _DenseChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient as a dense channels-last tensor."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)


def dense_channels_last_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient made a dense channels-last tensor in the backward pass.

    The gradient of one part of a concatenation is a strided slice of the whole gradient;
    BatchNorm's and the activations' CPU backward kernels take a slow path when that slice's
    layout differs from their input's (several times slower than the copy this makes). Only
    for channels-last CPU tensors while training; elsewhere ``x`` as it is.
    """
    if not (x.requires_grad and is_channels_last(x) and x.device.type == 'cpu') or \
            is_exporting():
        return x
    return _DenseChannelsLastGrad.apply(x)
