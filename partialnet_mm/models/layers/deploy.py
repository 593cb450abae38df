"""Inference forms of PartialNet's layers, made by ``PartialNet.switch_to_deploy()``.

Each module here computes the same function as the trained layers it replaces (up to float
round-off) with fewer passes over memory:

* every BatchNorm next to a convolution is folded into it (:mod:`..utils.fuse`);
* the two parts of a partial convolution are written straight into one output tensor
  instead of being split and concatenated (:class:`DeployPartialMixing`);
* PAT_ch's gate conv + BN become one small linear layer, and the BN after the gating becomes
  part of the per-channel gate (:class:`DeployChannelGate`);
* PAT_sf's LayerNorm affine is folded into the qkv projection and its iRPE bias is gathered
  once per feature size (:class:`DeploySelfAttention`);
* PAT_sp disappears into the MLP's second convolution: its gate logit becomes one more output
  channel, its gate BN a per-channel scale of those rows and its BN + 1x1 projection are
  composed with them (:class:`ResidualSpatialAttnOutput`).

The modules are inference-only: they hold no BatchNorm statistics to update and refuse to
be put in training mode. While exporting (ONNX / tracing) they use concatenation instead of
writes into slices of a preallocated tensor, which exporters represent more simply.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import (fuse_conv_norm, fuse_layernorm_linear, fuse_norm_pointwise_conv,
                     is_exporting, norm_affine, stack_pointwise_convs)


class InferenceOnly(nn.Module):
    """Base of the deploy modules: refuses training mode with a clear message."""

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(
                f'{type(self).__name__} is an inference-only (deploy) module made by '
                f'switch_to_deploy(); its BatchNorms are folded away and cannot be trained. '
                f'Train the original model and call switch_to_deploy() after loading its '
                f'weights.')
        return super().train(False)


def is_channels_last(x: torch.Tensor) -> bool:
    """A 4-D tensor laid out channels-last (and not also plain contiguous)."""
    return x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last)


class PointwiseConv(InferenceOnly):
    """A 1x1 convolution, computed as one matrix product over the positions on the CPU.

    For an NCHW-contiguous CPU input, ``W @ x.view(B, C, H * W)`` (one batched BLAS call) is
    up to ~4x faster than oneDNN's NCHW 1x1 convolution on the large early feature maps
    (e.g. 64 -> 128 channels at 56x56) and about as fast elsewhere; other inputs
    (channels-last, CUDA, exporting) use the convolution. The block's residual is added into
    the freshly computed output.

    Args:
        conv (nn.Conv2d): A 1x1, stride-1, ungrouped convolution (with or without bias).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 or \
                conv.padding != (0, 0):
            raise ValueError(f'PointwiseConv needs a 1x1, stride-1, ungrouped conv, got {conv}')
        self.conv = conv

    def forward(self, x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``conv(x)``, plus ``residual`` if given."""
        if x.device.type != 'cpu' or not x.is_contiguous() or is_exporting():
            out = self.conv(x)
            return out if residual is None else (
                residual + out if is_exporting() else out.add_(residual))
        batch, _, height, width = x.shape
        weight = self.conv.weight.flatten(1)
        out = torch.bmm(weight.expand(batch, *weight.shape), x.flatten(2))
        if self.conv.bias is not None:
            out.add_(self.conv.bias[:, None])
        if residual is not None:
            out.add_(residual.reshape(out.shape))
        return out.view(batch, -1, height, width)


class InplaceActivation(InferenceOnly):
    """An elementwise activation applied in place to a tensor its caller owns.

    Saves the output allocation; a channels-last tensor is processed through its
    contiguous NHWC view (PyTorch's CPU GELU is markedly slower on channels-last strides).

    Args:
        act (nn.Module): ``nn.GELU`` or ``nn.ReLU``; other modules are applied as they are.
    """

    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_exporting():
            return self.act(x)
        flat = x.permute(0, 2, 3, 1) if is_channels_last(x) else x
        if isinstance(self.act, nn.GELU):
            torch.ops.aten.gelu_(flat, approximate=self.act.approximate)
        elif isinstance(self.act, nn.ReLU):
            torch.relu_(flat)
        else:
            return self.act(x)
        return x


class DeployChannelGate(InferenceOnly):
    """PAT_ch's attention on the untouched channels, with both BatchNorms folded.

    Computes ``out = x * (g * s) + t`` (``+ x`` when ``residual``), where ``g`` is the
    hard-sigmoid gate of the per-channel [mean, std] style (gate conv and gate BN folded into
    one linear layer) and ``(s, t)`` is the BatchNorm after the gating.

    Args:
        gate_fc (nn.Linear): The folded gate: ``2 * C -> C`` on ``[mean_0, std_0, mean_1,
            ...]``.
        out_scale (Tensor): Per-channel scale ``s`` of the BN after gating, ``(C,)``.
        out_shift (Tensor): Per-channel shift ``t`` of that BN, ``(C,)``.
        residual (bool): Also add the input (the block adds the mixing output to its
            input).
    """

    def __init__(self, gate_fc: nn.Linear, out_scale: torch.Tensor, out_shift: torch.Tensor,
                 residual: bool = False):
        super().__init__()
        self.gate_fc = gate_fc
        self.register_buffer('out_scale', out_scale)
        self.register_buffer('out_shift', out_shift)
        self.residual = residual

    @classmethod
    def from_attention(cls, attn: nn.Module, residual: bool = False) -> 'DeployChannelGate':
        """Fold a :class:`PartialChannelAttention` (eval mode)."""
        conv = fuse_conv_norm(attn.gate_conv, attn.gate_norm)  # (C, C, 1, 2) with bias
        channels = conv.out_channels
        # A (1, 2) conv over the (C, 1, 2) style tensor is a linear layer over its flattening
        # (channel-major: mean_0, std_0, mean_1, std_1, ...).
        gate_fc = nn.Linear(2 * channels, channels).to(conv.weight.device)
        with torch.no_grad():
            gate_fc.weight.copy_(conv.weight.reshape(channels, 2 * channels))
            gate_fc.bias.copy_(conv.bias)
        gate_fc.requires_grad_(False)
        scale, shift = norm_affine(attn.norm)
        dtype = attn.gate_conv.weight.dtype
        return cls(gate_fc, scale.to(dtype), shift.to(dtype), residual)

    @staticmethod
    def std_mean(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Unbiased std and mean over the positions, (B, C) each: ``torch.std_mean``.

        Two passes (the mean, then the norm of the centred values) instead of PyTorch's
        one-pass Welford kernel, which is about ten times slower on the CPU; the two-pass
        formula is at least as accurate.
        """
        flat = x.flatten(2)
        if is_exporting():  # the size is symbolic there; the exported op is the same
            return torch.std_mean(flat, dim=-1)
        mean = flat.mean(-1, keepdim=True)
        std = torch.linalg.vector_norm(flat - mean, dim=-1) / math.sqrt(flat.shape[-1] - 1)
        return std, mean.squeeze(-1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-channel multiplier ``g * s`` (``+ 1`` with residual), (B, C)."""
        std, mean = self.std_mean(x)
        style = torch.stack((mean, std), dim=-1).flatten(1)  # (B, 2C)
        gate = F.hardsigmoid(self.gate_fc(style)) * self.out_scale
        return gate + 1 if self.residual else gate

    def forward(self, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``'s attention output, written into ``out`` when given."""
        gate = self.gate(x)[:, :, None, None]
        shift = self.out_shift.view(1, -1, 1, 1)
        if out is None:
            return torch.addcmul(shift, x, gate)
        return torch.addcmul(shift, x, gate, out=out)


class DeploySelfAttention(InferenceOnly):
    """PAT_sf's self-attention with the LayerNorm affine folded and the iRPE bias cached.

    Args:
        attn (nn.Module): The :class:`PartialSelfAttention` to convert (eval mode).
        residual (bool): Also add the input.
    """

    def __init__(self, attn: nn.Module, residual: bool = False):
        super().__init__()
        self.num_heads = attn.num_heads
        self.head_dims = attn.head_dims
        self.channels = attn.channels
        self.norm_eps, self.qkv = fuse_layernorm_linear(attn.norm, attn.qkv)
        self.rpe = attn.rpe
        self.proj = attn.proj
        self.residual = residual

    def forward(self, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = F.layer_norm(x.flatten(2).transpose(1, 2), (self.channels, ), None, None,
                              self.norm_eps)
        qkv = self.qkv(tokens).reshape(batch, -1, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if is_exporting():
            bias = self.rpe((height, width), device=x.device).to(q.dtype)
        else:
            bias = self.rpe.cached_bias((height, width), x.device, q.dtype)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        attn = self.proj(attn.transpose(1, 2).reshape(batch, -1, channels))
        attn = attn.transpose(1, 2).reshape(batch, channels, height, width)
        if out is None:
            return x + attn if self.residual else attn
        if self.residual:
            return torch.add(x, attn, out=out)
        return out.copy_(attn)


class DeployPartialMixing(InferenceOnly):
    """A partial convolution (PConv / PAT_ch / PAT_sf) writing both parts into one tensor.

    ``out[:, :Dc] = conv(x[:, :Dc])`` and ``out[:, Dc:] = untouched(x[:, Dc:])`` (each ``+ x``
    when ``residual``), with no split copies and no concatenation.

    Args:
        conv (nn.Conv2d): The 3x3 convolution of the first ``conv.in_channels`` channels.
        untouched (nn.Module, optional): Deploy form of the attention on the other channels
            (its own ``residual`` must match), or None: they pass through.
        residual (bool): Compute ``x + mixing(x)``.
    """

    def __init__(self, conv: nn.Conv2d, untouched: Optional[nn.Module], residual: bool):
        super().__init__()
        self.conv = conv
        self.conv_channels = conv.in_channels
        self.untouched = untouched
        self.residual = residual

    @classmethod
    def from_mixing(cls, mixing: nn.Module, residual: bool) -> 'DeployPartialMixing':
        """Convert a PartialConv / PATChannel / PATSelfAttention (eval mode)."""
        from .partial_conv import PATChannel, PATSelfAttention
        if isinstance(mixing, PATChannel):
            untouched = DeployChannelGate.from_attention(mixing.attn, residual)
        elif isinstance(mixing, PATSelfAttention):
            untouched = DeploySelfAttention(mixing.attn, residual)
        else:
            untouched = None
        return cls(mixing.conv, untouched, residual)

    def _untouched(self, x2: torch.Tensor, out: Optional[torch.Tensor]) -> torch.Tensor:
        if self.untouched is not None:
            return self.untouched(x2, out)
        if out is None:
            return x2 + x2 if self.residual else x2
        return torch.add(x2, x2, out=out) if self.residual else out.copy_(x2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, :self.conv_channels], x[:, self.conv_channels:]
        conv = self.conv(x1)
        if is_exporting():
            return torch.cat((x1 + conv if self.residual else conv,
                              self._untouched(x2, None)), dim=1)
        out = torch.empty_like(x)
        if self.residual:
            torch.add(x1, conv, out=out[:, :self.conv_channels])
        else:
            out[:, :self.conv_channels] = conv
        self._untouched(x2, out[:, self.conv_channels:])
        return out


class ResidualPointwiseOutput(InferenceOnly):
    """The MLP's last 1x1 convolution plus the block's residual: ``residual + conv(h)``.

    Args:
        conv (nn.Conv2d): The MLP's ``fc2``.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = PointwiseConv(conv)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.conv(hidden, residual)


class ResidualSpatialAttnOutput(InferenceOnly):
    """The MLP's last 1x1 convolution with PAT_sp folded in, plus the block's residual.

    PAT_sp on ``m = fc2(h)`` computes ``a' = BN_g(a * hsig(w_g . a))`` on the first half and
    ``b' = proj(BN_p(b))`` on the second. Both are linear in ``h`` up to the gate, so one 1x1
    convolution produces ``[s_g * a, proj(BN_p(b)), w_g . a]`` (``D + 1`` channels) and
    ``out = residual + [y_a * hsig(y_gate) + t_g, y_b]``.

    Args:
        conv (nn.Conv2d): The stacked convolution (``D + 1`` outputs).
        gate_channels (int): Channels of the gated half ``a``.
        gate_shift (Tensor): Shift ``t_g`` of the BN after the gating, ``(gate_channels,)``.
    """

    def __init__(self, conv: nn.Conv2d, gate_channels: int, gate_shift: torch.Tensor):
        super().__init__()
        self.conv = PointwiseConv(conv)
        self.gate_channels = gate_channels
        self.channels = conv.out_channels - 1
        self.register_buffer('gate_shift', gate_shift)

    @classmethod
    def from_mlp(cls, fc2: nn.Conv2d, spatial_attn: nn.Module) -> 'ResidualSpatialAttnOutput':
        """Fold a :class:`PATSpatial` (eval mode) into the ``fc2`` before it."""
        gate_channels = spatial_attn.gate_channels
        w2 = fc2.weight.double().flatten(1)  # (D, hidden)
        w2_gate, w2_proj = w2[:gate_channels], w2[gate_channels:]
        gate_scale, gate_shift = norm_affine(spatial_attn.gate_norm)
        proj = fuse_norm_pointwise_conv(spatial_attn.proj_norm, spatial_attn.proj)
        w_proj = proj.weight.double().flatten(1)
        w_gate_logit = spatial_attn.gate_conv.weight.double().flatten(1) @ w2_gate  # (1, hidden)
        conv = stack_pointwise_convs(
            (gate_scale[:, None] * w2_gate, None),
            (w_proj @ w2_proj, proj.bias),
            (w_gate_logit, None),
            like=fc2)
        return cls(conv, gate_channels, gate_shift.to(fc2.weight.dtype))

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        y = self.conv(hidden)
        g = self.gate_channels
        gate = F.hardsigmoid(y[:, self.channels:])
        shift = self.gate_shift.view(1, -1, 1, 1)
        if is_exporting():
            return residual + torch.cat(
                (torch.addcmul(shift, y[:, :g], gate), y[:, g:self.channels]), dim=1)
        out = torch.empty_like(residual)
        torch.addcmul(residual[:, :g], y[:, :g], gate, out=out[:, :g]).add_(shift)
        torch.add(residual[:, g:], y[:, g:self.channels], out=out[:, g:])
        return out


class DeployPartialNetBlock(InferenceOnly):
    """A PartialNet block for inference: folded norms, slice writes, no split/concatenate.

    Computes what :class:`PartialNetBlock` computes in eval mode: ``x + mlp(mixing(x))``, or
    ``y = x + mixing(x)``, ``y + mlp(y)`` for the self-attention blocks.

    Args:
        mixing (nn.Module): The spatial mixing.
        mixing_residual (bool): The block adds the mixing's input to the mixing's output
            (PAT_sf blocks).
        fc1 (nn.Module): The MLP's first 1x1 convolution with its BN folded in
            (:class:`PointwiseConv`).
        act (nn.Module): The MLP's activation (applied in place to ``fc1``'s output).
        output (nn.Module): ``output(hidden, residual)``: the MLP's last layers plus the
            residual (:class:`ResidualPointwiseOutput` or
            :class:`ResidualSpatialAttnOutput`).
        mixing_adds_residual (bool): ``mixing`` already adds its input (a
            :class:`DeployPartialMixing` built with ``residual=True``). Defaults to False.
    """

    def __init__(self, mixing: nn.Module, mixing_residual: bool, fc1: nn.Module,
                 act: nn.Module, output: nn.Module, mixing_adds_residual: bool = False):
        super().__init__()
        self.mixing = mixing
        self.mixing_residual = mixing_residual
        self.mixing_adds_residual = mixing_adds_residual and mixing_residual
        self.fc1 = fc1
        self.act = act
        self.output = output

    @classmethod
    def from_block(cls, block: nn.Module) -> 'DeployPartialNetBlock':
        """Convert a :class:`PartialNetBlock` in eval mode.

        PConv, PAT_ch and PAT_sf mixings are converted; any other mixing module is kept as it
        is (and still computes its own function), with only the MLP fused.
        """
        from .partial_conv import PartialConv, PATChannel, PATSelfAttention
        if block.training:
            raise RuntimeError('switch_to_deploy() needs the model in eval mode (call '
                               '.eval() first): deploy folds the BatchNorms\' running '
                               'statistics')
        mixing, residual = block.spatial_mixing, block.mixing_residual
        adds_residual = False
        if type(mixing) is PartialConv and not residual:
            mixing.forward_type = 'slicing'  # the same function, one copy fewer
        elif type(mixing) in (PartialConv, PATChannel, PATSelfAttention):
            mixing, adds_residual = DeployPartialMixing.from_mixing(mixing, residual), True
        mlp = block.mlp
        fc1 = PointwiseConv(fuse_conv_norm(mlp.fc1, mlp.norm))
        if mlp.spatial_attn is not None:
            output = ResidualSpatialAttnOutput.from_mlp(mlp.fc2, mlp.spatial_attn)
        else:
            output = ResidualPointwiseOutput(mlp.fc2)
        return cls(mixing, residual, fc1, InplaceActivation(mlp.act), output,
                   adds_residual).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixing(x)
        if self.mixing_residual:
            if not self.mixing_adds_residual:
                y = x + y
            return self.output(self.act(self.fc1(y)), y)
        return self.output(self.act(self.fc1(y)), x)
