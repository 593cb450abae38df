"""The attention branches of the partial mixers, on the channels the 3x3 convolution leaves.

* :class:`PartialChannelAttention` (PAT_ch): a per-channel gate from each channel's mean and
  standard deviation over the positions;
* :class:`PartialSelfAttention` (PAT_sf): multi-head self-attention over the positions with
  a Euclidean iRPE bias.

Both take ``deploy`` (build the folded inference form) and ``switch_to_deploy()`` (fold in
place); in the inference form they can write their output into a given tensor and add their
input (``forward(x, out, residual)``), which lets a mixer assemble its output without
concatenation.
"""
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from ..utils.deploy import DeployMixin
from ..utils.exporting import is_exporting
from ..utils.fuse import fuse_conv_norm, fuse_layernorm_linear, norm_affine
from ..utils.ops import batch_norm_any_batch, channel_std_mean
from .irpe import EuclideanRelativePositionBias


def _finish(x: torch.Tensor, y: torch.Tensor, out: Optional[torch.Tensor],
            residual: bool) -> torch.Tensor:
    """``x + y`` (residual) or ``y``, written into ``out`` when given."""
    if out is None:
        return x + y if residual else y
    return torch.add(x, y, out=out) if residual else out.copy_(y)


class PartialChannelAttention(DeployMixin, nn.Module):
    """Channel attention of PAT_ch.

    Per channel, the mean and (unbiased) standard deviation over the positions are stacked as
    a (B, C, 1, 2) tensor, mixed across channels by a dense (1, 2) convolution, normalised
    and squashed by a hard sigmoid into a gate ``g``; the output is ``norm(x * g)``.

    The gate's norm sees one value per sample and channel. For a training batch of one
    sample (and no other process sharing a SyncBN's statistics) it normalises with its
    running statistics instead of failing (:func:`~..utils.ops.batch_norm_any_batch`).

    Deploy form: the gate convolution and its norm become one linear layer ``gate_fc``
    (``2C -> C``) and the norm after the gating a per-channel affine (``out_scale``,
    ``out_shift``): ``out = x * (g * s) + t``, one ``addcmul``.

    Args:
        channels (int): Channels of the attended part.
        norm_cfg (dict): Config of both norm layers (BN family). Defaults to BN.
        deploy (bool): Build the inference form. Defaults to False.
    """

    naive = False  # the authors' formulation (torch.std_mean); see set_naive_forward

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), deploy: bool = False):
        super().__init__()
        self.channels = channels
        self.deploy = deploy
        if deploy:
            self.gate_fc = nn.Linear(2 * channels, channels)
            self.register_buffer('out_scale', torch.ones(channels))
            self.register_buffer('out_shift', torch.zeros(channels))
        else:
            # The norms are registered before the convolution: mmcv's fuse_conv_bn folds a
            # BatchNorm into the Conv2d registered before it among its siblings, and the
            # gate convolution is computed here as a linear layer from its weight alone (a
            # bias mmcv gave it would be ignored). switch_to_deploy() folds this module.
            self.gate_norm = build_norm_layer(norm_cfg, channels)[1]
            self.norm = build_norm_layer(norm_cfg, channels)[1]
            self.gate_conv = nn.Conv2d(channels, channels, kernel_size=(1, 2), bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) channel gate of ``x`` (training form)."""
        if self.naive:
            std, mean = torch.std_mean(x.flatten(2), dim=-1)
            style = torch.stack((mean, std), dim=-1).unsqueeze(2)  # (B, C, 1, 2)
            return self._gate_from_logits(self.gate_conv(style))
        return self._gate_from_stats(*channel_std_mean(x))

    def _gate_from_stats(self, std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        # the (1, 2) convolution over [mean, std] as a linear layer on their interleaving
        style = torch.stack((mean, std), dim=-1).flatten(1)  # (B, 2C)
        weight = self.gate_conv.weight.reshape(self.channels, 2 * self.channels)
        return self._gate_from_logits(F.linear(style, weight)[:, :, None, None])

    def _gate_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(batch_norm_any_batch(self.gate_norm, logits))

    def _gated_norm(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(x * gate(x))`` as one ``addcmul``, the BatchNorm's statistics derived from
        ``x``'s per-channel means and standard deviations (training form).

        ``y = x * g`` with a gate per sample and channel has, per channel, the mean
        ``mean_b(g m)`` and the (biased) variance ``mean_b(g^2 v) + mean_b((g m - mu)^2)``
        (``m``, ``v``: each sample's spatial mean and variance, which the gate needs anyway).
        So ``y`` itself is never stored or read twice; the function, the running statistics
        and the gradients are BatchNorm's. Other norm layers (a SyncBN in a distributed run,
        LayerNorm, ...) take the plain path.
        """
        norm = self.norm
        std, mean = channel_std_mean(x)
        gate = self._gate_from_stats(std, mean).flatten(1)  # (B, C)
        if not (type(norm) in (nn.BatchNorm2d, nn.SyncBatchNorm) and norm.affine and (
                not norm.training or not (dist.is_available() and dist.is_initialized()
                                          and dist.get_world_size() > 1))):
            return norm(x * gate[:, :, None, None])
        count = x.shape[2] * x.shape[3]
        if norm.training or not norm.track_running_stats:
            gated_mean = gate * mean  # (B, C): each sample's mean of y
            mu = gated_mean.mean(0)
            var = (gate.square() * std.square() * ((count - 1) / count)).mean(0) + \
                (gated_mean - mu).square().mean(0)
            if norm.training and norm.track_running_stats:
                self._update_running_stats(mu, var, x.shape[0] * count)
        else:
            mu, var = norm.running_mean, norm.running_var
        scale = norm.weight * torch.rsqrt(var + norm.eps)
        shift = norm.bias - mu * scale
        return torch.addcmul(shift[None, :, None, None], x, (gate * scale)[:, :, None, None])

    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """What ``nn.BatchNorm2d`` does to its running statistics in a training forward."""
        norm = self.norm
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            momentum = norm.momentum if norm.momentum is not None else \
                1. / float(norm.num_batches_tracked)
            unbiased = var * (count / max(count - 1, 1))
            # under autocast the statistics come in half precision; the buffers stay fp32
            norm.running_mean.lerp_(mean.detach().to(norm.running_mean.dtype), momentum)
            norm.running_var.lerp_(unbiased.detach().to(norm.running_var.dtype), momentum)

    def _fold(self) -> None:
        conv = fuse_conv_norm(self.gate_conv, self.gate_norm)  # (C, C, 1, 2) with bias
        channels = self.channels
        # A (1, 2) conv over the (C, 1, 2) style tensor is a linear layer over its flattening
        # (channel-major: mean_0, std_0, mean_1, std_1, ...).
        self.gate_fc = nn.Linear(2 * channels, channels).to(conv.weight)
        with torch.no_grad():
            self.gate_fc.weight.copy_(conv.weight.reshape(channels, 2 * channels))
            self.gate_fc.bias.copy_(conv.bias)
        scale, shift = norm_affine(self.norm)
        self.register_buffer('out_scale', scale.to(conv.weight))
        self.register_buffer('out_shift', shift.to(conv.weight))
        del self.gate_conv, self.gate_norm, self.norm

    def forward(self, x: torch.Tensor, out: Optional[torch.Tensor] = None,
                residual: bool = False) -> torch.Tensor:
        """The attention output of ``x`` (``+ x`` with ``residual``), into ``out`` if given
        (``out`` in the inference form only)."""
        if not self.deploy:
            gated = self.norm(x * self.gate(x)) if self.naive else self._gated_norm(x)
            return _finish(x, gated, out, residual)
        std, mean = channel_std_mean(x)
        style = torch.stack((mean, std), dim=-1).flatten(1)  # (B, 2C)
        gate = F.hardsigmoid(self.gate_fc(style)) * self.out_scale
        if residual:  # x + (x * g + t) = x * (g + 1) + t
            gate = gate + 1
        shift = self.out_shift.view(1, -1, 1, 1)
        if out is None or is_exporting():
            return torch.addcmul(shift, x, gate[:, :, None, None])
        return torch.addcmul(shift, x, gate[:, :, None, None], out=out)


class PartialSelfAttention(DeployMixin, nn.Module):
    """Multi-head self-attention of PAT_sf over the positions of the attended channels.

    LayerNorm over channels at each position, then attention over the ``H * W`` tokens with a
    Euclidean iRPE bias on the logits.

    Deploy form: the LayerNorm's affine folded into ``qkv`` (which gains a bias), the iRPE
    bias gathered once per feature size, no dropout.

    Args:
        channels (int): Channels of the attended part.
        num_heads (int): Attention heads; must divide ``channels``. Defaults to 4.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.1.
        proj_drop_rate (float): Dropout after the output projection. Defaults to 0.1.
        norm_cfg (dict): Config of the token norm (LN). Defaults to LN with eps 1e-6.
        rpe_ratio (float): iRPE ratio (alpha). Defaults to 20.
        deploy (bool): Build the inference form. Defaults to False.
    """

    def __init__(self, channels: int, num_heads: int = 4, attn_drop_rate: float = 0.1,
                 proj_drop_rate: float = 0.1, norm_cfg: dict = dict(type='LN', eps=1e-6),
                 rpe_ratio: float = 20., deploy: bool = False):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(
                f'PartialNet: the self-attention part has {channels} channels, which '
                f'{num_heads} heads cannot share; choose embed_dims so that the last '
                f'stage\'s untouched channels are divisible by num_heads.')
        self.channels = channels
        self.num_heads = num_heads
        self.head_dims = channels // num_heads
        self.attn_drop_rate = attn_drop_rate
        self.deploy = deploy
        self.norm = build_norm_layer(norm_cfg, channels)[1]
        if deploy:
            self._check_foldable_norm()
            self.norm = nn.LayerNorm(channels, eps=self.norm.eps, elementwise_affine=False)
        self.qkv = nn.Linear(channels, channels * 3, bias=deploy)
        self.rpe = EuclideanRelativePositionBias(num_heads, ratio=rpe_ratio)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def _check_foldable_norm(self) -> None:
        if not isinstance(self.norm, nn.LayerNorm) or len(self.norm.normalized_shape) != 1:
            raise TypeError(f'PartialSelfAttention: the inference form folds a LayerNorm '
                            f'over channels into qkv; {type(self.norm).__name__} cannot be '
                            f"folded (use norm_cfg=dict(type='LN'))")

    def _fold(self) -> None:
        self._check_foldable_norm()
        eps, self.qkv = fuse_layernorm_linear(self.norm, self.qkv)
        self.norm = nn.LayerNorm(self.channels, eps=eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, out: Optional[torch.Tensor] = None,
                residual: bool = False) -> torch.Tensor:
        """The attention output of ``x`` (``+ x`` with ``residual``), into ``out`` if given."""
        batch, channels, height, width = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (B, L, C)
        qkv = self.qkv(tokens).reshape(batch, -1, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, head_dims)
        if self.deploy and not is_exporting():
            bias = self.rpe.cached_bias((height, width), x.device, q.dtype)
        else:
            bias = self.rpe((height, width), device=x.device).to(q.dtype)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop_rate if self.training and not self.deploy else 0.)
        attn = self.proj_drop(self.proj(attn.transpose(1, 2).reshape(batch, -1, channels)))
        attn = attn.transpose(1, 2).reshape(batch, channels, height, width)
        return _finish(x, attn, out, residual)
