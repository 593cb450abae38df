"""Partial convolutions: PConv and the partial-attention spatial mixers PAT_ch / PAT_sf.

Each mixer splits its input along channels into a *convolved* part (the first
``conv_channels`` channels, a 3x3 convolution) and an *untouched* part (the rest), which
PConv passes through unchanged and the PAT mixers send through an attention branch. The two
parts are concatenated again in the same order.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .irpe import EuclideanRelativePositionBias


def partial_channels(channels: int, n_div: int) -> int:
    """Width of the convolved part of a ``channels``-wide partial convolution."""
    if n_div < 1 or channels % n_div:
        raise ValueError(
            f'PartialNet: {channels} channels cannot be split into n_div={n_div} parts; '
            f'choose embed_dims (and their stage multiples) divisible by n_div.')
    return channels // n_div


class PartialConv(nn.Module):
    """PConv: a 3x3 convolution over the first ``conv_channels`` channels only.

    Args:
        channels (int): Input and output channels.
        conv_channels (int): Channels that are convolved (the first ones); the remaining
            ``channels - conv_channels`` are the untouched part.
        forward_type (str): ``'split_cat'`` splits, convolves and concatenates;
            ``'slicing'`` copies the input once and overwrites the convolved slice in place
            (the same function, one copy fewer; for inference). Defaults to ``'split_cat'``.
    """

    def __init__(self, channels: int, conv_channels: int, forward_type: str = 'split_cat'):
        super().__init__()
        if not 0 < conv_channels <= channels:
            raise ValueError(f'conv_channels must be in [1, {channels}], got {conv_channels}')
        if forward_type not in ('split_cat', 'slicing'):
            raise ValueError(
                f"forward_type must be 'split_cat' or 'slicing', got {forward_type!r}")
        self.channels = channels
        self.conv_channels = conv_channels
        self.untouched_channels = channels - conv_channels
        self.forward_type = forward_type
        self.conv = nn.Conv2d(conv_channels, conv_channels, 3, 1, 1, bias=False)

    def forward_untouched(self, x: torch.Tensor) -> torch.Tensor:
        """What happens to the untouched channels: nothing, in a plain PConv."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_type == 'slicing' and type(self).forward_untouched is \
                PartialConv.forward_untouched:
            out = x.clone()  # the caller's tensor stays intact (it feeds the residual)
            out[:, :self.conv_channels] = self.conv(x[:, :self.conv_channels])
            return out
        x1, x2 = torch.split(x, [self.conv_channels, self.untouched_channels], dim=1)
        return torch.cat((self.conv(x1), self.forward_untouched(x2)), dim=1)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, conv_channels={self.conv_channels}, '
                f'forward_type={self.forward_type!r}')


class PartialChannelAttention(nn.Module):
    """Channel attention of PAT_ch, applied to the untouched channels.

    Per channel, the mean and (unbiased) standard deviation over the spatial positions are
    stacked as a (B, C, 1, 2) tensor, mixed across channels by a dense (1, 2) convolution,
    normalised and squashed by a hard sigmoid into a gate ``g``; the output is
    ``norm(x * g)``.

    Args:
        channels (int): Channels of the untouched part.
        norm_cfg (dict): Config of both norm layers. Defaults to ``dict(type='BN')``.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.gate_conv = nn.Conv2d(channels, channels, kernel_size=(1, 2), bias=False)
        self.gate_norm = build_norm_layer(norm_cfg, channels)[1]
        self.gate_act = nn.Hardsigmoid()
        self.norm = build_norm_layer(norm_cfg, channels)[1]

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) channel gate of ``x``."""
        std, mean = torch.std_mean(x.flatten(2), dim=-1)
        style = torch.stack((mean, std), dim=-1).unsqueeze(2)  # (B, C, 1, 2)
        return self.gate_act(self.gate_norm(self.gate_conv(style)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x * self.gate(x))


class PartialSelfAttention(nn.Module):
    """Multi-head self-attention of PAT_sf over the tokens of the untouched channels.

    LayerNorm over channels at each position, then attention over the ``H * W`` tokens with a
    Euclidean iRPE bias on the logits.

    Args:
        channels (int): Channels of the untouched part.
        num_heads (int): Attention heads; must divide ``channels``. Defaults to 4.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.1.
        proj_drop_rate (float): Dropout after the output projection. Defaults to 0.1.
        norm_cfg (dict): Config of the token norm.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        rpe_ratio (float): iRPE ratio (alpha). Defaults to 20.
    """

    def __init__(self, channels: int, num_heads: int = 4, attn_drop_rate: float = 0.1,
                 proj_drop_rate: float = 0.1, norm_cfg: dict = dict(type='LN', eps=1e-6),
                 rpe_ratio: float = 20.):
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
        self.norm = build_norm_layer(norm_cfg, channels)[1]
        self.qkv = nn.Linear(channels, channels * 3, bias=False)
        self.rpe = EuclideanRelativePositionBias(num_heads, ratio=rpe_ratio)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (B, L, C)
        qkv = self.qkv(tokens).reshape(batch, -1, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, head_dims)
        bias = self.rpe((height, width), device=x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop_rate if self.training else 0.)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, -1, channels)))
        return out.transpose(1, 2).reshape(batch, channels, height, width)


class PATChannel(PartialConv):
    """PAT_ch: PConv whose untouched channels go through partial channel attention.

    Args:
        channels (int): Input and output channels.
        conv_channels (int): Channels convolved by the 3x3 convolution.
        norm_cfg (dict): Norm config of the attention branch. Defaults to BN.
    """

    def __init__(self, channels: int, conv_channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__(channels, conv_channels)
        self.attn = PartialChannelAttention(self.untouched_channels, norm_cfg=norm_cfg)

    def forward_untouched(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class PATSelfAttention(PartialConv):
    """PAT_sf: PConv whose untouched channels go through self-attention with iRPE.

    Args:
        channels (int): Input and output channels.
        conv_channels (int): Channels convolved by the 3x3 convolution.
        num_heads (int): Attention heads. Defaults to 4.
        attn_drop_rate (float): Attention dropout. Defaults to 0.1.
        proj_drop_rate (float): Projection dropout. Defaults to 0.1.
        norm_cfg (dict): Token norm config. Defaults to ``dict(type='LN', eps=1e-6)``.
    """

    def __init__(self, channels: int, conv_channels: int, num_heads: int = 4,
                 attn_drop_rate: float = 0.1, proj_drop_rate: float = 0.1,
                 norm_cfg: dict = dict(type='LN', eps=1e-6)):
        super().__init__(channels, conv_channels)
        self.attn = PartialSelfAttention(
            self.untouched_channels, num_heads=num_heads, attn_drop_rate=attn_drop_rate,
            proj_drop_rate=proj_drop_rate, norm_cfg=norm_cfg)

    def forward_untouched(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class PATSpatial(nn.Module):
    """PAT_sp: partial spatial attention at the end of the MLP.

    The first half ``a`` is gated per position, ``a <- norm(a * hardsigmoid(conv(a)))`` with
    a 1x1 convolution to one channel; the second half ``b`` is normalised then mixed by a
    1x1 convolution, ``b <- proj(proj_norm(b))``.

    Args:
        channels (int): Input and output channels (even).
        norm_cfg (dict): Norm config. Defaults to BN.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.gate_channels = channels - channels // 2
        self.proj_channels = channels // 2
        self.gate_conv = nn.Conv2d(self.gate_channels, 1, 1, bias=False)
        self.gate_act = nn.Hardsigmoid()
        self.gate_norm = build_norm_layer(norm_cfg, self.gate_channels)[1]
        self.proj_norm = build_norm_layer(norm_cfg, self.proj_channels)[1]
        self.proj = nn.Conv2d(self.proj_channels, self.proj_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.gate_channels, self.proj_channels], dim=1)
        a = self.gate_norm(a * self.gate_act(self.gate_conv(a)))
        b = self.proj(self.proj_norm(b))
        return torch.cat((a, b), dim=1)
