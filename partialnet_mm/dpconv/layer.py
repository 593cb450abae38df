"""DPConv: a partial convolution whose split (the convolved width) is learned.

The paper's *dynamic partial convolution* replaces the fixed ``n_div`` of a block's partial
convolution by gates learned with the network. :class:`DPConvMixer` (registered as the mixer
``'DPConv'``) is our version of it: train and eval compute the same function for the same
gates, and a trained layer exports to a plain PConv / PAT_ch / PAT_sf with its learned width
(:mod:`.export`). ``docs/dpconv.md`` has the derivation; in short:

* a ``D``-channel layer holds ``K`` gates ``g_k``, binarised to ``s_k = (sign(g_k) + 1) / 2``
  with a straight-through gradient where ``|g_k| < 1``; the 3x3 weight mask is the Kronecker
  product ``I_2 (x) (s_1 1 + (1 - s_1) I_2) (x) ... (x) 1_{base x base}``;
* the convolved part is always the *leading* ``c = base * 2**sum(s_k)`` channels (the
  exported layer needs no channel permutation); gates out of "legal" order (off before on)
  only make the mask inside that block sparser, and the order loss pushes them back;
* the attention branch (PAT_ch / PAT_sf) stays and acts on the other ``D - c`` channels,
  built full-width and used through its ``[c:]`` slices;
* while the gates learn, the same output is computed in a form whose straight-through
  gradient tells each gate what switching it would change (a full ``D x D`` convolution);
  evaluation and frozen gates cost a PConv of width ``c``.
"""
import math
import warnings
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..models.layers import MIXERS, PartialChannelAttention, PartialSelfAttention
from ..models.utils import SpatialMixer

# The plain mixers a DPConv layer generalises (and exports to).
PLAIN_MIXERS = ('PConv', 'PATChannel', 'PATSelfAttention')


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
            f'are a power of two times a multiple of {divisor}, or keep a plain mixer in this '
            f'stage (mixer_cfgs).')
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


@MIXERS.register_module(name='DPConv')
class DPConvMixer(SpatialMixer):
    """A spatial mixer (PConv, PAT_ch or PAT_sf) whose split is learned: the mixer ``'DPConv'``.

    State-dict keys are those of the plain mixer (``conv.weight``, ``attn.*``) plus
    ``conv.gates``; the tensors are full-width (``D`` instead of ``c`` / ``D - c``).
    :meth:`export_state_dict` gives the plain mixer's tensors for the learned split, and a
    plain mixer's tensors (e.g. ImageNet weights) load into it computing the same function
    (``adapts_state_dict``: the gates are set to their split).

    Args:
        channels (int): Block width ``D``.
        conv_channels (int): Convolved width at the start (the fixed split it replaces).
        mixer (str): The plain mixer it generalises: ``'PConv'``, ``'PATChannel'`` (PAT_ch)
            or ``'PATSelfAttention'`` (PAT_sf). Defaults to ``'PATChannel'``.
        base_channels (int, optional): Finest group size; None picks the finest valid one
            (:func:`default_base_channels`, a multiple of ``num_heads`` for PAT_sf).
        gate_init (float): ``|g|`` at the start, in ``(0, 1)``. Defaults to 0.1.
        norm_cfg (dict): Norm config of PAT_ch. Defaults to BN.
        num_heads (int): Heads of PAT_sf. Defaults to 4.
        attn_drop_rate (float): Attention dropout of PAT_sf. Defaults to 0.1.
        proj_drop_rate (float): Projection dropout of PAT_sf. Defaults to 0.1.
        attn_norm_cfg (dict): Token norm of PAT_sf. Defaults to LN with eps 1e-6.
    """

    adapts_state_dict = True
    has_inference_form = False  # export to a plain mixer first (tools/export_dpconv.py)

    def __init__(self, channels: int, conv_channels: int, mixer: str = 'PATChannel',
                 base_channels: Optional[int] = None, gate_init: float = 0.1,
                 norm_cfg: dict = dict(type='BN'), num_heads: int = 4,
                 attn_drop_rate: float = 0.1, proj_drop_rate: float = 0.1,
                 attn_norm_cfg: dict = dict(type='LN', eps=1e-6)):
        super().__init__()
        if mixer not in PLAIN_MIXERS:
            raise ValueError(f'DPConv: mixer must be one of {PLAIN_MIXERS}, got {mixer!r}')
        self_attention = mixer == 'PATSelfAttention'
        if base_channels is None:
            base_channels = default_base_channels(channels, num_heads if self_attention else 1)
        elif self_attention and base_channels % num_heads:
            raise ValueError(f'DPConv: base_channels={base_channels} must be a multiple of '
                             f'num_heads={num_heads} for PAT_sf')
        self.channels = channels
        self.mixer = mixer
        self.residual = self_attention  # as the plain mixer: PAT_sf returns x + mix(x)
        self.conv = DPConv(channels, conv_channels, base_channels, gate_init)
        if mixer == 'PATChannel':
            self.attn = PartialChannelAttention(channels, norm_cfg=norm_cfg)
        elif self_attention:
            self.attn = PartialSelfAttention(
                channels, num_heads=num_heads, attn_drop_rate=attn_drop_rate,
                proj_drop_rate=proj_drop_rate, norm_cfg=attn_norm_cfg)
        else:
            self.attn = None
        self.losses_attached = False  # set by attach_dpconv_losses
        self._warned = False

    @property
    def conv_channels(self) -> int:
        return self.conv.conv_channels

    # ------------------------------------------------------------------ untouched branch
    def forward_untouched(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """The untouched branch on ``x[:, c:]``: ``D - c`` channels."""
        if self.attn is None:
            return x[:, c:]
        if self.mixer == 'PATChannel':
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
        qkv_weight = attn.qkv.weight.view(3, full, full)[:, c:, c:].reshape(
            3 * channels, channels)
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
        if self.training and not self.losses_attached and not self._warned:
            self._warned = True
            warnings.warn(
                'DPConv is on, but nothing adds its losses (loss_dpconv_complexity, '
                'loss_dpconv_order) to the model\'s loss dict and nothing schedules its '
                "warm-up. Add custom_hooks=[dict(type='DPConvHook')] to the config, or call "
                'partialnet_mm.dpconv.attach_dpconv_losses(model) when training outside a '
                'Runner.')
        if not self.conv.learning:
            z, _, c = self.conv(x)
            y = torch.cat((z, self.forward_untouched(x, c)), dim=1)
        else:
            z, m, c = self.conv(x, straight_through=True)
            untouched = torch.cat((x[:, :c], self.forward_untouched(x, c)), dim=1)
            m = m.to(x.dtype).view(1, -1, 1, 1)
            y = m * z + (1 - m) * untouched
        return x + y if self.residual else y

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
        raise RuntimeError(f'DPConvMixer: no rule to slice attn.{key} {tuple(tensor.shape)}')

    def export_state_dict(self) -> 'OrderedDict[str, torch.Tensor]':
        """State dict of the plain mixer with the learned split, same function.

        Keys are those of the plain mixer (:attr:`mixer`) built with ``conv_channels = c``:
        ``conv.weight`` is ``(W * M)[:c, :c]``, the attention tensors are their ``[c:]``
        parts.
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
            raise KeyError(f'DPConvMixer ({self.mixer}): the plain state dict does not fit: '
                           f'missing {missing}, unexpected {unexpected}')
        if self.attn is not None:
            for key in self.attn.state_dict():
                view = self._untouched_view(key, state[f'attn.{key}'], c)
                value = plain[f'attn.{key}']
                if value.numel() != view.numel():
                    raise ValueError(
                        f'DPConvMixer: attn.{key} {tuple(value.shape)} does not fit a '
                        f'{self.channels}-channel layer with {c} convolved channels')
                view.copy_(value.reshape(view.shape))
        return state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Plain-mixer tensors (a narrower ``conv.weight``, no gates) are embedded first."""
        weight = state_dict.get(prefix + 'conv.weight')
        if weight is not None and weight.shape != self.conv.weight.shape:
            plain = {k[len(prefix):]: state_dict.pop(k) for k in list(state_dict)
                     if k.startswith(prefix)}
            try:
                embedded = self.embed_plain_state_dict(plain)
            except (KeyError, ValueError) as err:
                raise ValueError(f'{prefix[:-1]}: {err}') from None
            state_dict.update((prefix + k, v) for k, v in embedded.items())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f'channels={self.channels}, mixer={self.mixer!r}'
