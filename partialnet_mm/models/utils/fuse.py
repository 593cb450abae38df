"""Algebra for inference-time fusion: BatchNorm / LayerNorm affines folded into convolutions.

Every function here takes trained (eval-mode) layers and returns new layers or tensors that
compute the same function with fewer operations; the folded weights are computed in float64
and cast back, so the only difference from the unfused layers is float round-off.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def norm_affine(norm: nn.Module,
                num_features: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as a per-channel affine map ``y = x * scale + shift``.

    Args:
        norm (nn.Module): A BatchNorm layer (``nn.BatchNorm*d``, mmcv's ``SyncBN``) with
            running statistics, or the ``nn.Identity`` that mmcv's ``fuse_conv_bn`` leaves
            where it folded a BatchNorm into the convolution before it (then
            ``num_features`` gives the width).
        num_features (int, optional): Channels of an ``nn.Identity`` norm.

    Returns:
        tuple[Tensor, Tensor]: ``(scale, shift)``, float64, shape ``(num_features,)``.
    """
    if isinstance(norm, nn.Identity) and num_features is not None:
        scale = torch.ones(num_features, dtype=torch.float64)
        return scale, torch.zeros_like(scale)
    if not isinstance(norm, _BatchNorm):
        raise TypeError(f'only BatchNorm layers can be folded, got {type(norm).__name__}; '
                        f'deploy fusion supports norm_cfg of the BN family')
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(f'{type(norm).__name__} has no running statistics '
                         f'(track_running_stats=False): it normalises with batch statistics '
                         f'and cannot be folded')
    inv_std = (norm.running_var.double() + norm.eps).rsqrt()
    weight = norm.weight.double() if norm.weight is not None else torch.ones_like(inv_std)
    bias = norm.bias.double() if norm.bias is not None else torch.zeros_like(inv_std)
    scale = weight * inv_std
    return scale, bias - norm.running_mean.double() * scale


def _new_conv_like(conv: nn.Conv2d, weight: torch.Tensor,
                   bias: Optional[torch.Tensor]) -> nn.Conv2d:
    """A Conv2d with ``conv``'s geometry and the given (float64) weight and bias."""
    out_channels, in_per_group = weight.shape[:2]
    fused = nn.Conv2d(in_per_group * conv.groups, out_channels, conv.kernel_size,
                      stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                      groups=conv.groups, bias=bias is not None,
                      padding_mode=conv.padding_mode).to(conv.weight.device)
    dtype = conv.weight.dtype
    with torch.no_grad():
        fused.weight.copy_(weight.to(dtype))
        if bias is not None:
            fused.bias.copy_(bias.to(dtype))
    fused.requires_grad_(False)
    return fused


def _conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        return conv.weight.new_zeros(conv.out_channels, dtype=torch.float64)
    return conv.bias.double()


def fuse_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """``norm(conv(x))`` as one convolution with a bias (conv followed by BatchNorm).

    Args:
        conv (nn.Conv2d): The convolution (with or without bias).
        norm (nn.Module): The BatchNorm after it, over ``conv.out_channels`` channels.

    Returns:
        nn.Conv2d: The fused convolution.
    """
    scale, shift = norm_affine(norm, conv.out_channels)
    scale, shift = scale.to(conv.weight.device), shift.to(conv.weight.device)
    if scale.numel() != conv.out_channels:
        raise ValueError(f'norm has {scale.numel()} channels, conv outputs '
                         f'{conv.out_channels}')
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    return _new_conv_like(conv, weight, _conv_bias(conv) * scale + shift)


def fuse_norm_pointwise_conv(norm: nn.Module, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(norm(x))`` as one convolution: BatchNorm *before* a 1x1 convolution.

    Exact for pointwise, ungrouped convolutions only (a padded k x k convolution would see
    the norm's shift at the borders where it sees zeros).

    Args:
        norm (nn.Module): The BatchNorm over ``conv.in_channels`` channels.
        conv (nn.Conv2d): A 1x1, ungrouped, unpadded convolution.

    Returns:
        nn.Conv2d: The fused convolution.
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
        raise ValueError('a norm before a convolution folds into it only for 1x1, '
                         'ungrouped, unpadded convolutions')
    scale, shift = norm_affine(norm)
    weight = conv.weight.double()  # (out, in, 1, 1)
    bias = _conv_bias(conv) + weight.flatten(1) @ shift
    return _new_conv_like(conv, weight * scale.view(1, -1, 1, 1), bias)


def fuse_layernorm_linear(norm: nn.LayerNorm, linear: nn.Linear) -> Tuple[float, nn.Linear]:
    """``linear(norm(x))`` as ``linear'(layer_norm(x))`` with the norm's affine folded away.

    Args:
        norm (nn.LayerNorm): LayerNorm over the last dimension.
        linear (nn.Linear): The linear layer after it.

    Returns:
        tuple[float, nn.Linear]: The norm's ``eps`` (the remaining normalisation is
        ``F.layer_norm(x, shape, None, None, eps)``) and the fused linear layer.
    """
    if not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 1:
        raise TypeError(f'expected a LayerNorm over the last dimension, got {norm}')
    weight = linear.weight.double()
    bias = linear.bias.double() if linear.bias is not None else weight.new_zeros(
        linear.out_features)
    if norm.elementwise_affine:
        if norm.bias is not None:
            bias = bias + weight @ norm.bias.double()
        weight = weight * norm.weight.double()
    fused = nn.Linear(linear.in_features, linear.out_features).to(linear.weight.device)
    with torch.no_grad():
        fused.weight.copy_(weight.to(linear.weight.dtype))
        fused.bias.copy_(bias.to(linear.weight.dtype))
    fused.requires_grad_(False)
    return norm.eps, fused


def stack_pointwise_convs(*parts: Tuple[torch.Tensor, Optional[torch.Tensor]],
                          like: nn.Conv2d) -> nn.Conv2d:
    """One 1x1 convolution whose output channels are the given parts, in order.

    Args:
        *parts (tuple[Tensor, Tensor | None]): ``(weight, bias)`` pairs, weights of shape
            ``(out_i, in)`` or ``(out_i, in, 1, 1)`` (any float dtype), bias ``(out_i,)`` or
            None for zero.
        like (nn.Conv2d): Device and dtype donor (a 1x1 convolution).

    Returns:
        nn.Conv2d: The stacked convolution, with a bias.
    """
    weights, biases = [], []
    for weight, bias in parts:
        weight = weight.double().reshape(weight.shape[0], -1)
        weights.append(weight)
        biases.append(bias.double() if bias is not None else weight.new_zeros(weight.shape[0]))
    weight = torch.cat(weights)[:, :, None, None]
    return _new_conv_like(like, weight, torch.cat(biases))
