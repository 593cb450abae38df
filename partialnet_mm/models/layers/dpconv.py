"""DPConv: partial convolutions whose split (the convolved width) is learned.

The paper's *dynamic partial convolution* (``../shared/SPEC.md``, "DPConv") replaces the fixed
``n_div`` of a block's partial convolution by gates learned with the network. This module is
our version of it; it keeps what the paper learns and removes what made the authors' code
unusable after training (train and eval computed different functions, and nothing turned a
trained layer into a plain PConv).

What a layer computes
---------------------
A block of ``D = base * 2**(K + 1)`` channels holds ``K`` real gates ``g_k`` and a 3x3 weight
``W`` of shape ``(D, D, 3, 3)``. Each gate is binarised, ``s_k = (sign(g_k) + 1) / 2`` with
``sign(0) = +1``, and its gradient passes straight through where ``|g_k| < 1`` (there
``ds/dg = 1/2``, the derivative of ``(g + 1) / 2``). The weight mask is the Kronecker product

    M = I_2 (x) (s_1 1 + (1 - s_1) I_2) (x) ... (x) (s_K 1 + (1 - s_K) I_2) (x) 1_{base x base}

(``1`` the all-ones 2x2 matrix, ``I_2`` the identity): a block structure with
``G = 2**(1 + sum(1 - s_k))`` groups. Its leading factor is fixed to ``I_2``: at least half
of the channels always stay for the attention branch (PAT_ch / PAT_sf would otherwise be
empty, and the plain export could not hold them). The **convolved part** is the first group,
``c = D / G = base * 2**sum(s_k)`` channels, and it is always the *leading* ``c`` channels:

    y[:, :c] = conv3x3(x[:, :c], (W * M)[:c, :c])
    y[:, c:] = untouched(x, c)          # identity (PConv), PAT_ch or PAT_sf on x[:, c:]

This is a plain PConv with ``c`` convolved channels whose weight is ``(W * M)[:c, :c]`` and
whose attention branch has ``D - c`` channels: :meth:`DPConvMixing.export_state_dict` writes
exactly those tensors and the exported block computes the same numbers.

Why the convolved channels are the leading block (no permutation)
-----------------------------------------------------------------
With the gates in "legal" order (the ``0`` gates before the ``1`` gates) the first group of
``M`` is the leading ``[0, c)`` block; in any other order it is a strided set of channels.
We do not permute channels to bring a strided set to the front: the input of every block's
mixing is the residual stream, which all blocks of a stage (and the merging layer, the output
norm and the next stage) share, so a per-block permutation cannot be folded into adjacent
weights; the export would need a gather per block and would no longer run at plain-PConv
speed. Instead the convolved block is the leading ``c`` channels whatever the order (``c``
depends only on how many gates are off), and ``M`` restricts its connections: for gates in
legal order ``M[:c, :c]`` is all ones (a dense PConv); in any other order it is a sparser,
grouped pattern inside the block, so the layer spends the budget of ``c`` channels on fewer
connections. The order loss pushes the gates back to legal order. Export is exact either way.

Interaction with the untouched-channel attention (PAT_ch, PAT_sf)
-----------------------------------------------------------------
The authors' DPConv replaced the whole spatial mixing (attention included). Ours replaces only
the convolution: the attention branch of the block stays and acts on the untouched channels
``x[:, c:]``, whatever ``c`` currently is. It is built for the full width ``D`` and used on
its trailing ``D - c`` channels:

* PAT_ch: the dense ``(1, 2)`` gate convolution is masked to the untouched rows and columns
  (``W_g[c:, c:]``); its norm layers are per-channel. This equals a PAT_ch of width ``D - c``
  with the sliced parameters, and works with any BN flavour (SyncBN included).
* PAT_sf: LayerNorm, qkv and output projection use their ``[c:]`` slices and the ``D - c``
  channels form ``num_heads`` heads, as the exported PAT_sf of width ``D - c`` does; the iRPE
  table is shared. ``base`` is a multiple of ``num_heads`` so every reachable ``D - c`` splits
  into heads.

Train == eval
-------------
Training and evaluation compute the same function of the input for the same gates, at any
input size. Evaluation (and training with frozen gates) takes the fast path above. Training
with learnable gates evaluates the same output as

    y = m * conv3x3(x, W * M') + (1 - m) * u

where ``m`` is the leading-``c`` channel mask (``1`` on ``[0, c)``), ``M'`` is ``M`` with the
entries ``[:c, c:]`` zeroed (the convolved outputs never read untouched inputs) and ``u`` is
the untouched branch on ``[c, D)`` and the identity on ``[0, c)``. Only the gradient differs
from the fast path, and it is what lets the gates learn:

* ``m`` is the first row of the Kronecker mask built with the gates sorted into legal order,
  ``(x)_k [1, s_k]``; its value is exactly the leading-``c`` mask, its straight-through
  derivative tells a gate that is off what switching it on would do (its channels would be
  convolved instead of going through ``u``), and one that is on what switching it off would
  cost;
* the entries of ``M`` zeroed in ``M'`` keep their gradient (``M' = M - (M * cross).detach()``),
  so the gates also see what the convolved channels would gain from reading the channels of
  the next group;
* ``W`` itself only gets gradient where the forward used it.

This costs a full ``D x D`` convolution per layer while the gates learn (the authors' training
paid the same); evaluation and frozen gates cost a PConv of width ``c``.

Losses (see :func:`dpconv_losses`)
----------------------------------
* complexity: with the mask size of a layer ``D**2 / G = D * c`` and the budget
  ``sum(D**2) / b**2`` over the DPConv layers (``b = budget``, 2 by default),
  ``complexity_weight * relu(sum(D * c) / budget_size - 1)``: zero under budget, positive
  above. ``b = 2`` allows an average convolved part of ``D / 4``, the fixed ``n_div = 4``.
* order: for every pair ``k < k'`` with ``s_k = 1`` and ``s_k' = 0`` (which makes the groups
  non-contiguous), ``order_weight * (g_k - g_k')``; zero in legal order. It acts on ``g``
  directly, so it also moves gates outside the straight-through window.
"""
import math
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from .partial_conv import (PartialChannelAttention, PartialConv, PartialSelfAttention,
                           PATChannel, PATSelfAttention)

LOSS_COMPLEXITY = 'loss_dpconv_complexity'
LOSS_ORDER = 'loss_dpconv_order'

# The keys of a backbone's ``dpconv`` config and their defaults.
DPCONV_DEFAULTS = dict(
    stages=None,  # None: every stage
    budget=2.,  # b: total mask size <= sum(D^2) / b^2 (b = 2: average split D / 4)
    warmup_epochs=0,  # gates frozen (and losses zero) for the first epochs
    complexity_weight=1.,
    order_weight=1.,
    gate_init=0.1,  # |g| at the start; inside the straight-through window (0, 1)
)


# ---------------------------------------------------------------------------- gate algebra
class _SignSTE(torch.autograd.Function):
    """``(sign(g) + 1) / 2`` with ``sign(0) = +1``; gradient ``1/2`` where ``|g| < 1``."""

    @staticmethod
    def forward(ctx, gates):
        ctx.save_for_backward(gates)
        return (gates >= 0).to(gates.dtype)

    @staticmethod
    def backward(ctx, grad):
        gates, = ctx.saved_tensors
        return grad * 0.5 * (gates.abs() < 1).to(grad.dtype)


def gate_states(gates: torch.Tensor, straight_through: bool = True) -> torch.Tensor:
    """The binary gates ``s`` (0 or 1) of real gates ``g``; differentiable if asked."""
    if straight_through:
        return _SignSTE.apply(gates)
    return (gates.detach() >= 0).to(gates.dtype)


def conv_width(states: torch.Tensor, base_channels: int) -> int:
    """Convolved channels ``c = base * 2**sum(s)`` of a layer with binary gates ``s``."""
    return int(base_channels * 2**int(round(float(states.detach().sum()))))


def kronecker_mask(states: torch.Tensor, base_channels: int) -> torch.Tensor:
    """The ``(D, D)`` mask ``I_2 (x) (x)_k (s_k 1 + (1 - s_k) I_2) (x) 1_{base x base}``."""
    eye = torch.eye(2, dtype=states.dtype, device=states.device)
    ones = torch.ones(2, 2, dtype=states.dtype, device=states.device)
    mask = eye
    for s in states:
        mask = torch.kron(mask, s * ones + (1 - s) * eye)
    return torch.kron(mask, torch.ones(base_channels, base_channels, dtype=states.dtype,
                                       device=states.device))


def leading_mask(states: torch.Tensor, base_channels: int) -> torch.Tensor:
    """``(D,)`` mask of the convolved (leading ``c``) channels, differentiable in ``s``.

    The first row of the Kronecker mask with the gates sorted into legal order (off gates
    first), ``[1, 0] (x) (x)_k [1, s_k] (x) 1_base``: equal to ``1`` on ``[0, c)`` and ``0``
    elsewhere for any gate order, with a straight-through derivative for every gate.
    """
    order = torch.argsort(states.detach(), stable=True)
    row = torch.tensor([1., 0.], dtype=states.dtype, device=states.device)
    for s in states[order]:
        row = torch.kron(row, torch.stack((torch.ones_like(s), s)))
    return row.repeat_interleave(base_channels)


def order_penalty(gates: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``sum over k < k' with s_k = 1, s_k' = 0 of (g_k - g_k')``: zero iff legal order."""
    s = states.detach()
    inverted = torch.triu(s[:, None] * (1 - s)[None, :], diagonal=1)
    return (inverted * (gates[:, None] - gates[None, :])).sum()


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def default_base_channels(channels: int, divisor: int = 1) -> int:
    """The finest group size a ``channels``-wide DPConv can use.

    The smallest ``base`` with ``channels / base`` a power of two (at least 2) and ``base`` a
    multiple of ``divisor`` (the heads of a PAT_sf layer, so that every untouched part splits
    into heads).
    """
    base = channels
    while base % 2 == 0:
        base //= 2
    while base % divisor and base < channels:
        base *= 2
    if base % divisor or channels // base < 2:
        raise ValueError(
            f'DPConv: a {channels}-channel layer cannot be split into two or more groups of '
            f'a multiple of {divisor} channels with a power-of-two count; choose widths that '
            f'are a power of two times a multiple of {divisor}, or leave this stage out of '
            f'dpconv.stages.')
    return base


# ---------------------------------------------------------------------------- modules
class DPConv(nn.Conv2d):
    """The 3x3 convolution of a partial convolution, with a learned convolved width.

    Holds the full ``(D, D, 3, 3)`` weight and the ``K = log2(D / base) - 1`` gates; see the
    module docstring for the mask and the two forward paths. It is an ``nn.Conv2d`` (bias
    free), so the backbone's initialisation treats its weight like every other conv weight.

    Args:
        channels (int): ``D``, input and output channels of the mixing.
        conv_channels (int): Convolved width at the start; must be ``base * 2**a`` with
            ``0 <= a <= K`` (the gates are initialised to it, in legal order).
        base_channels (int): ``base``, the convolved width when every gate is off;
            ``D / base`` must be a power of two, at least 2.
        gate_init (float): ``|g|`` of every gate at the start, in ``(0, 1)`` (inside the
            straight-through window, else the gates could never move). Defaults to 0.1.
    """

    def __init__(self, channels: int, conv_channels: int, base_channels: int,
                 gate_init: float = 0.1):
        super().__init__(channels, channels, 3, 1, 1, bias=False)
        if base_channels < 1 or channels % base_channels or not _is_power_of_two(
                channels // base_channels) or channels // base_channels < 2:
            raise ValueError(
                f'DPConv: base_channels={base_channels} does not fit {channels} channels: '
                f'{channels} / base_channels must be a power of two, at least 2')
        num_gates = int(math.log2(channels // base_channels)) - 1
        if not (conv_channels % base_channels == 0
                and _is_power_of_two(conv_channels // base_channels)
                and conv_channels <= channels // 2):
            reachable = [base_channels * 2**a for a in range(num_gates + 1)]
            raise ValueError(
                f'DPConv: a {channels}-channel layer cannot start with {conv_channels} '
                f'convolved channels; reachable widths are {reachable} (set n_div or the '
                f"arch's conv_channels to one of them)")
        if not 0 < gate_init < 1:
            raise ValueError(f'DPConv: gate_init must be in (0, 1) (inside the straight-'
                             f'through window), got {gate_init}')
        self.channels = channels
        self.base_channels = base_channels
        on = int(math.log2(conv_channels // base_channels))
        init = [-gate_init] * (num_gates - on) + [gate_init] * on  # legal order: off first
        self.gates = nn.Parameter(torch.tensor(init, dtype=torch.float32))
        self.frozen = False  # gates fixed (warm-up): fast path, no gradient to the gates

    @property
    def learning(self) -> bool:
        """Whether the gates learn in this forward (training, unfrozen, grad enabled)."""
        return (self.training and not self.frozen and self.gates.requires_grad
                and torch.is_grad_enabled())

    def states(self, straight_through: bool = False) -> torch.Tensor:
        """The binary gates ``s``."""
        return gate_states(self.gates, straight_through)

    @property
    def conv_channels(self) -> int:
        """The current convolved width ``c``."""
        return conv_width(self.states(), self.base_channels)

    def mask_size(self, straight_through: bool = False) -> torch.Tensor:
        """``D**2 / G = D * c`` as a differentiable function of the gates."""
        states = self.states(straight_through)
        return self.channels * self.base_channels * torch.prod(1 + states)

    def forward(self, x: torch.Tensor, straight_through: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor], int]:
        """The convolved part of ``x``.

        Returns:
            (z, m, c): without ``straight_through``, ``z`` holds the ``c`` convolved channels
            and ``m`` is None; with it, ``z`` has all ``D`` channels (``z[:, :c]`` the same
            values) and ``m`` is the differentiable leading-``c`` mask.
        """
        states = self.states(straight_through)
        c = conv_width(states, self.base_channels)
        mask = kronecker_mask(states, self.base_channels)
        if not straight_through:
            weight = self.weight[:c, :c] * mask[:c, :c, None, None]
            return F.conv2d(x[:, :c], weight, padding=1), None, c
        block = torch.arange(self.channels, device=x.device) < c
        cross = (block[:, None] & ~block[None, :]).to(mask.dtype)
        mask = mask - (mask * cross).detach()  # value: cross entries 0; gradient: all of M
        z = F.conv2d(x, self.weight * mask[:, :, None, None], padding=1)
        return z, leading_mask(states, self.base_channels), c

    def gates_for(self, conv_channels: int) -> torch.Tensor:
        """Gates (in legal order, this layer's magnitudes) whose convolved width is
        ``conv_channels``."""
        reachable = [self.base_channels * 2**a for a in range(self.gates.numel() + 1)]
        if conv_channels not in reachable:
            raise ValueError(f'DPConv: a {self.channels}-channel layer cannot have '
                             f'{conv_channels} convolved channels; reachable: {reachable}')
        on = reachable.index(conv_channels)
        magnitude = self.gates.detach().abs().clamp(min=1e-6)
        sign = torch.ones_like(magnitude)
        sign[:self.gates.numel() - on] = -1
        return sign * magnitude

    def export_weight(self) -> torch.Tensor:
        """``(W * M)[:c, :c]``: the weight of the equivalent plain PConv."""
        states = self.states()
        c = conv_width(states, self.base_channels)
        mask = kronecker_mask(states, self.base_channels)
        return (self.weight[:c, :c] * mask[:c, :c, None, None]).detach().clone()

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, base_channels={self.base_channels}, '
                f'gates={self.gates.numel()}, conv_channels={self.conv_channels}')


class DPConvMixing(nn.Module):
    """Spatial mixing of a block (PConv, PAT_ch or PAT_sf) with a DPConv split.

    State-dict keys are those of the plain mixer (``conv.weight``, ``attn.*``) plus
    ``conv.gates``; the tensors are full-width (``D`` instead of ``c`` / ``D - c``).
    :meth:`export_state_dict` gives the plain mixer's tensors for the learned split.

    Args:
        channels (int): Block width ``D``.
        conv_channels (int): Convolved width at the start (the fixed split it replaces).
        mixer (str): ``'pconv'``, ``'channel_attn'`` (PAT_ch) or ``'self_attn'`` (PAT_sf).
        base_channels (int, optional): Finest group size; None picks the finest valid one
            (:func:`default_base_channels`, a multiple of ``num_heads`` for PAT_sf).
        gate_init (float): ``|g|`` at the start. Defaults to 0.1.
        norm_cfg (dict): Norm config of PAT_ch. Defaults to BN.
        num_heads (int): Heads of PAT_sf. Defaults to 4.
        attn_drop_rate (float): Attention dropout of PAT_sf. Defaults to 0.1.
        proj_drop_rate (float): Projection dropout of PAT_sf. Defaults to 0.1.
        attn_norm_cfg (dict): Token norm of PAT_sf. Defaults to LN with eps 1e-6.
    """

    mixers = ('pconv', 'channel_attn', 'self_attn')

    def __init__(self, channels: int, conv_channels: int, mixer: str = 'channel_attn',
                 base_channels: Optional[int] = None, gate_init: float = 0.1,
                 norm_cfg: dict = dict(type='BN'), num_heads: int = 4,
                 attn_drop_rate: float = 0.1, proj_drop_rate: float = 0.1,
                 attn_norm_cfg: dict = dict(type='LN', eps=1e-6)):
        super().__init__()
        if mixer not in self.mixers:
            raise ValueError(f'DPConvMixing: mixer must be one of {self.mixers}, got {mixer!r}')
        if base_channels is None:
            base_channels = default_base_channels(
                channels, num_heads if mixer == 'self_attn' else 1)
        elif mixer == 'self_attn' and base_channels % num_heads:
            raise ValueError(f'DPConvMixing: base_channels={base_channels} must be a multiple '
                             f'of num_heads={num_heads} for PAT_sf')
        self.channels = channels
        self.mixer = mixer
        self.conv = DPConv(channels, conv_channels, base_channels, gate_init)
        if mixer == 'channel_attn':
            self.attn = PartialChannelAttention(channels, norm_cfg=norm_cfg)
        elif mixer == 'self_attn':
            self.attn = PartialSelfAttention(
                channels, num_heads=num_heads, attn_drop_rate=attn_drop_rate,
                proj_drop_rate=proj_drop_rate, norm_cfg=attn_norm_cfg)
        else:
            self.attn = None

    @property
    def conv_channels(self) -> int:
        return self.conv.conv_channels

    # ------------------------------------------------------------------ untouched branch
    def forward_untouched(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """The untouched branch on ``x[:, c:]``: ``D - c`` channels."""
        if self.mixer == 'pconv':
            return x[:, c:]
        if self.mixer == 'channel_attn':
            keep = torch.arange(self.channels, device=x.device) >= c
            mask = (keep[:, None] & keep[None, :]).to(x.dtype)[:, :, None, None]
            weight = self.attn.gate_conv.weight * mask
            # the module's own forward, with the gate conv restricted to [c:] x [c:]; its
            # norm layers are per-channel, so channels [c:] are those of a (D - c)-wide PAT_ch
            return functional_call(self.attn, {'gate_conv.weight': weight}, (x, ))[:, c:]
        return self._self_attention(x[:, c:], c)

    def _self_attention(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """PAT_sf of width ``D - c`` on ``x`` with the ``[c:]`` slices of the parameters (the
        computation of :class:`PartialSelfAttention`, whose export it must equal)."""
        attn, full = self.attn, self.channels
        batch, channels, height, width = x.shape
        head_dims = channels // attn.num_heads
        tokens = F.layer_norm(x.flatten(2).transpose(1, 2), (channels, ),
                              attn.norm.weight[c:], attn.norm.bias[c:], attn.norm.eps)
        qkv_weight = attn.qkv.weight.view(3, full, full)[:, c:, c:].reshape(3 * channels,
                                                                              channels)
        qkv = F.linear(tokens, qkv_weight).reshape(batch, -1, 3, attn.num_heads, head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = attn.rpe((height, width), device=x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=attn.attn_drop_rate if self.training else 0.)
        out = F.linear(out.transpose(1, 2).reshape(batch, -1, channels),
                       attn.proj.weight[c:, c:], attn.proj.bias[c:])
        out = attn.proj_drop(out)
        return out.transpose(1, 2).reshape(batch, channels, height, width)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.conv.learning:
            z, _, c = self.conv(x)
            return torch.cat((z, self.forward_untouched(x, c)), dim=1)
        z, m, c = self.conv(x, straight_through=True)
        untouched = torch.cat((x[:, :c], self.forward_untouched(x, c)), dim=1)
        m = m.to(x.dtype).view(1, -1, 1, 1)
        return m * z + (1 - m) * untouched

    # ------------------------------------------------------------------ export / import
    def _untouched_view(self, key: str, tensor: torch.Tensor, c: int) -> torch.Tensor:
        """The part of a full-width attention tensor that the plain mixer with ``c``
        convolved channels holds (a view: written through by :meth:`embed_plain_state_dict`)."""
        full = self.channels
        if key in ('gate_conv.weight', 'proj.weight'):
            return tensor[c:, c:]
        if key == 'qkv.weight':
            return tensor.view(3, full, full)[:, c:, c:]
        if tensor.dim() == 1 and tensor.numel() == full:  # per-channel norm parameters, bias
            return tensor[c:]
        if key.endswith('num_batches_tracked') or key == 'rpe.bias_table':
            return tensor
        raise RuntimeError(f'DPConvMixing: no rule to slice attn.{key} {tuple(tensor.shape)}')

    def export_state_dict(self) -> 'OrderedDict[str, torch.Tensor]':
        """State dict of the plain mixer with the learned split, same function.

        Keys are those of :class:`PartialConv` / :class:`PATChannel` /
        :class:`PATSelfAttention` built with ``conv_channels = c``: ``conv.weight`` is
        ``(W * M)[:c, :c]``, the attention tensors are their ``[c:]`` parts.
        """
        c, untouched = self.conv_channels, self.channels - self.conv_channels
        out = OrderedDict([('conv.weight', self.conv.export_weight())])
        if self.attn is not None:
            for key, value in self.attn.state_dict().items():
                view = self._untouched_view(key, value.detach(), c)
                if key == 'qkv.weight':
                    view = view.reshape(3 * untouched, untouched)
                out[f'attn.{key}'] = view.clone()
        return out

    def embed_plain_state_dict(self, plain: Dict[str, torch.Tensor]
                               ) -> 'OrderedDict[str, torch.Tensor]':
        """This layer's state dict computing what the plain mixer's state dict ``plain``
        computes (the inverse of :meth:`export_state_dict`).

        ``plain`` holds the keys of a plain mixer (e.g. from an ImageNet checkpoint) with
        ``c`` convolved channels: the gates are set to ``c`` (in legal order), the weights
        go into the leading block and the attention's ``[c:]`` parts; the rest keeps this
        layer's current values.
        """
        weight = plain['conv.weight']
        c = weight.shape[0]
        state = OrderedDict((k, v.detach().clone()) for k, v in self.state_dict().items())
        state['conv.gates'] = self.conv.gates_for(c)
        state['conv.weight'][:c, :c] = weight
        missing = sorted(set(state) - {'conv.gates'} - set(plain))
        unexpected = sorted(set(plain) - set(state))
        if missing or unexpected:
            raise KeyError(f'DPConvMixing ({self.mixer}): the plain state dict does not fit: '
                           f'missing {missing}, unexpected {unexpected}')
        if self.attn is not None:
            for key in self.attn.state_dict():
                view = self._untouched_view(key, state[f'attn.{key}'], c)
                value = plain[f'attn.{key}']
                if value.numel() != view.numel():
                    raise ValueError(
                        f'DPConvMixing: attn.{key} {tuple(value.shape)} does not fit a '
                        f'{self.channels}-channel layer with {c} convolved channels')
                view.copy_(value.reshape(view.shape))
        return state

    def extra_repr(self) -> str:
        return f'channels={self.channels}, mixer={self.mixer!r}'


# ---------------------------------------------------------------------------- backbone glue
def parse_dpconv_cfg(cfg: dict, num_stages: int) -> dict:
    """Validate a backbone's ``dpconv`` config and fill in :data:`DPCONV_DEFAULTS`."""
    if not isinstance(cfg, dict):
        raise TypeError(f'PartialNet: dpconv must be a dict (keys {sorted(DPCONV_DEFAULTS)}) '
                        f'or None, got {type(cfg).__name__}')
    unknown = sorted(set(cfg) - set(DPCONV_DEFAULTS))
    if unknown:
        raise ValueError(f'PartialNet: dpconv has unknown keys {unknown}; allowed: '
                         f'{sorted(DPCONV_DEFAULTS)} (defaults {DPCONV_DEFAULTS})')
    cfg = dict(DPCONV_DEFAULTS, **cfg)
    stages = tuple(range(num_stages)) if cfg['stages'] is None else cfg['stages']
    if isinstance(stages, int):
        stages = (stages, )
    stages = tuple(int(s) for s in stages)
    if not stages or len(set(stages)) != len(stages) or not all(
            0 <= s < num_stages for s in stages):
        raise ValueError(f'PartialNet: dpconv.stages must be distinct stage indices in '
                         f'[0, {num_stages - 1}], got {cfg["stages"]}')
    if not cfg['budget'] >= 1:
        raise ValueError(f'PartialNet: dpconv.budget (b, the budget is sum(D^2) / b^2) must be '
                         f'>= 1, got {cfg["budget"]}')
    if int(cfg['warmup_epochs']) != cfg['warmup_epochs'] or cfg['warmup_epochs'] < 0:
        raise ValueError(f'PartialNet: dpconv.warmup_epochs must be a non-negative integer, '
                         f'got {cfg["warmup_epochs"]}')
    for key in ('complexity_weight', 'order_weight'):
        if not cfg[key] >= 0:
            raise ValueError(f'PartialNet: dpconv.{key} must be >= 0, got {cfg[key]}')
    if not 0 < cfg['gate_init'] < 1:
        raise ValueError(f'PartialNet: dpconv.gate_init must be in (0, 1) (inside the '
                         f'straight-through window), got {cfg["gate_init"]}')
    cfg.update(stages=tuple(sorted(stages)), budget=float(cfg['budget']),
               warmup_epochs=int(cfg['warmup_epochs']))
    return cfg


def enable_dpconv(backbone: nn.Module, cfg: dict, norm_cfg: dict, attn_norm_cfg: dict,
                  attn_drop_rate: float, proj_drop_rate: float) -> dict:
    """Replace the spatial mixing of every block in ``cfg['stages']`` by a
    :class:`DPConvMixing` starting from the block's own split. Returns the parsed config."""
    cfg = parse_dpconv_cfg(cfg, len(backbone.stages))
    for i in cfg['stages']:
        for j, block in enumerate(backbone.stages[i].blocks):
            plain = block.spatial_mixing
            if isinstance(plain, PATSelfAttention):
                mixer, num_heads = 'self_attn', plain.attn.num_heads
            elif isinstance(plain, PATChannel):
                mixer, num_heads = 'channel_attn', 1
            elif isinstance(plain, PartialConv):
                mixer, num_heads = 'pconv', 1
            else:
                raise TypeError(f'PartialNet: DPConv cannot replace the spatial mixing '
                                f'{type(plain).__name__} of stage {i} block {j}')
            try:
                block.spatial_mixing = DPConvMixing(
                    plain.channels, plain.conv_channels, mixer, gate_init=cfg['gate_init'],
                    norm_cfg=norm_cfg, num_heads=num_heads, attn_drop_rate=attn_drop_rate,
                    proj_drop_rate=proj_drop_rate, attn_norm_cfg=attn_norm_cfg)
            except ValueError as err:
                raise ValueError(f'PartialNet stage {i} block {j}: {err}') from None
    backbone.register_forward_pre_hook(_warn_if_losses_unused)
    set_dpconv_epoch(backbone, 0, cfg)
    return cfg


def dpconv_layers(backbone: nn.Module) -> List[Tuple[str, DPConvMixing]]:
    """``[('s{i}.b{j}', mixing), ...]`` for every DPConv layer of a PartialNet."""
    return [(f's{i}.b{j}', block.spatial_mixing)
            for i, stage in enumerate(backbone.stages)
            for j, block in enumerate(stage.blocks)
            if isinstance(block.spatial_mixing, DPConvMixing)]


def set_dpconv_epoch(backbone: nn.Module, epoch: int, cfg: Optional[dict] = None) -> bool:
    """Freeze the gates during the warm-up epochs, free them afterwards.

    Returns whether they are frozen at ``epoch`` (0-based).
    """
    cfg = cfg if cfg is not None else backbone.dpconv
    frozen = epoch < cfg['warmup_epochs']
    for _, layer in dpconv_layers(backbone):
        layer.conv.frozen = frozen
    return frozen


def dpconv_losses(backbone: nn.Module, cfg: Optional[dict] = None) -> Dict[str, torch.Tensor]:
    """The complexity and order losses of a PartialNet's DPConv layers.

    Both are zero (still connected to every gate, so that distributed training sees every
    parameter used) while the gates are frozen or do not require gradients.
    """
    cfg = cfg if cfg is not None else backbone.dpconv
    convs = [layer.conv for _, layer in dpconv_layers(backbone)]
    zero = sum(conv.gates.sum() for conv in convs) * 0.
    learning = [conv for conv in convs if not conv.frozen and conv.gates.requires_grad]
    if not learning:
        return {LOSS_COMPLEXITY: zero, LOSS_ORDER: zero}
    size = sum(conv.mask_size(straight_through=conv in learning) for conv in convs)
    budget = sum(conv.channels**2 for conv in convs) / cfg['budget']**2
    complexity = cfg['complexity_weight'] * F.relu(size / budget - 1)
    order = cfg['order_weight'] * sum(
        order_penalty(conv.gates, conv.states()) for conv in learning)
    return {LOSS_COMPLEXITY: complexity + zero, LOSS_ORDER: order + zero}


def dpconv_budget_usage(backbone: nn.Module) -> float:
    """Total mask size over the budget (<= 1: within budget)."""
    convs = [layer.conv for _, layer in dpconv_layers(backbone)]
    size = sum(conv.channels * conv.conv_channels for conv in convs)
    return size / (sum(conv.channels**2 for conv in convs) / backbone.dpconv['budget']**2)


def export_dpconv(backbone: nn.Module) -> Tuple['OrderedDict[str, torch.Tensor]', tuple]:
    """A DPConv PartialNet's state dict rewritten as a plain PartialNet's.

    Returns:
        (state_dict, conv_channels): the backbone state dict (same key names, DPConv layers
        sliced to their learned split, no gates) and the per-stage, per-block convolved
        widths for the plain backbone's ``arch['conv_channels']``.
    """
    state = backbone.state_dict()
    for name, layer in dpconv_layers(backbone):
        stage, block = name[1:].split('.b')
        prefix = f'stages.{stage}.blocks.{block}.spatial_mixing.'
        for key in [k for k in state if k.startswith(prefix)]:
            del state[key]
        for key, value in layer.export_state_dict().items():
            state[prefix + key] = value
    conv_channels = tuple(
        tuple(int(block.spatial_mixing.conv_channels) for block in stage.blocks)
        for stage in backbone.stages)
    return state, conv_channels


def embed_plain_weights(backbone: nn.Module, state_dict: Dict[str, torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
    """A plain backbone state dict (``conv_channels``-wide convs, e.g. converted ImageNet
    weights) made loadable into a DPConv backbone computing the same function.

    Layers whose tensors are already full-width (a DPConv checkpoint) and backbones without
    DPConv are left as they are.
    """
    state_dict = OrderedDict(state_dict)
    for name, layer in dpconv_layers(backbone):
        stage, block = name[1:].split('.b')
        prefix = f'stages.{stage}.blocks.{block}.spatial_mixing.'
        weight = state_dict.get(prefix + 'conv.weight')
        if weight is None or weight.shape == layer.conv.weight.shape:
            continue
        plain = {k[len(prefix):]: state_dict.pop(k) for k in list(state_dict)
                 if k.startswith(prefix)}
        try:
            embedded = layer.embed_plain_state_dict(plain)
        except (KeyError, ValueError) as err:
            raise ValueError(f'stage {stage} block {block}: {err}') from None
        state_dict.update((prefix + k, v) for k, v in embedded.items())
    return state_dict


def _warn_if_losses_unused(backbone: nn.Module, args) -> None:
    if backbone.training and not getattr(backbone, 'aux_losses_attached', False) and not \
            getattr(backbone, '_dpconv_unattached_warned', False):
        backbone._dpconv_unattached_warned = True
        warnings.warn(
            'PartialNet: DPConv is on, but nothing adds its losses (loss_dpconv_complexity, '
            'loss_dpconv_order) to the model\'s loss dict and nothing schedules its warm-up. '
            "Add custom_hooks=[dict(type='DPConvHook')] to the config, or call "
            'partialnet_mm.engine.attach_aux_losses(model) when training outside a Runner.')
