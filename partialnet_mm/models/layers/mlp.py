"""The pointwise MLP of a block, optionally ending in PAT_sp (partial spatial attention)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer

from ..utils.deploy import DeployMixin
from ..utils.exporting import is_exporting
from ..utils.fuse import (fuse_conv_norm, fuse_norm_pointwise_conv, norm_affine,
                          stack_pointwise_convs)
from ..utils.ops import activation_, pointwise_conv, pointwise_conv_add


class PATSpatial(nn.Module):
    """PAT_sp: partial spatial attention at the end of the MLP.

    The first half ``a`` is gated per position, ``a <- gate_norm(a * hardsigmoid(gate_conv(a)))``
    with a 1x1 convolution to one channel; the second half ``b`` is normalised then mixed by a
    1x1 convolution, ``b <- proj(proj_norm(b))``.

    PAT_sp has no inference form of its own: it folds into the 1x1 convolution before it
    (:meth:`fold_into`, called by :class:`PartialNetMLP`). Both halves are linear in that
    convolution's input up to the gate, so one convolution produces ``[s_g * a,
    proj(proj_norm(b)), gate logit]`` (``D + 1`` channels) and the folded layer only applies
    the gate and the gate norm's shift ``t_g`` (:meth:`forward_folded`).

    Args:
        channels (int): Input and output channels.
        norm_cfg (dict): Norm config. Defaults to BN.
        deploy (bool): Build the folded form (only ``gate_shift``). Defaults to False.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), deploy: bool = False):
        super().__init__()
        self.channels = channels
        self.gate_channels = channels - channels // 2
        self.proj_channels = channels // 2
        self.deploy = deploy
        if deploy:
            self.register_buffer('gate_shift', torch.zeros(self.gate_channels))
            return
        # The norms are registered before the convolutions: mmcv's fuse_conv_bn folds a
        # BatchNorm into the Conv2d registered before it among its siblings, and neither norm
        # reads a convolution's output here (gate_norm normalises the gated half, proj_norm
        # comes before proj). fold_into() folds this module.
        self.gate_norm = build_norm_layer(norm_cfg, self.gate_channels)[1]
        self.proj_norm = build_norm_layer(norm_cfg, self.proj_channels)[1]
        self.gate_conv = nn.Conv2d(self.gate_channels, 1, 1, bias=False)
        self.proj = nn.Conv2d(self.proj_channels, self.proj_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.gate_channels, self.proj_channels], dim=1)
        a = self.gate_norm(a * F.hardsigmoid(self.gate_conv(a)))
        b = self.proj(self.proj_norm(b))
        return torch.cat((a, b), dim=1)

    def fold_into(self, conv: nn.Conv2d) -> nn.Conv2d:
        """The 1x1 convolution ``conv`` (before this layer) with this layer folded in.

        Switches this module to its folded form; returns the stacked convolution (``D + 1``
        outputs, with a bias) that replaces ``conv``.
        """
        gate_channels = self.gate_channels
        w2 = conv.weight.double().flatten(1)  # (D, hidden)
        w2_gate, w2_proj = w2[:gate_channels], w2[gate_channels:]
        gate_scale, gate_shift = norm_affine(self.gate_norm)
        proj = fuse_norm_pointwise_conv(self.proj_norm, self.proj)
        w_proj = proj.weight.double().flatten(1)
        w_gate_logit = self.gate_conv.weight.double().flatten(1) @ w2_gate  # (1, hidden)
        stacked = stack_pointwise_convs(
            (gate_scale[:, None] * w2_gate, None),
            (w_proj @ w2_proj, proj.bias),
            (w_gate_logit, None),
            like=conv)
        del self.gate_conv, self.gate_norm, self.proj_norm, self.proj
        self.register_buffer('gate_shift', gate_shift.to(conv.weight.dtype))
        self.deploy = True
        return stacked

    def forward_folded(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + PAT_sp(m)`` from ``y``, the folded convolution's ``D + 1`` outputs."""
        g, channels = self.gate_channels, self.channels
        gate = F.hardsigmoid(y[:, channels:])
        shift = self.gate_shift.view(1, -1, 1, 1)
        if is_exporting():
            return residual + torch.cat(
                (torch.addcmul(shift, y[:, :g], gate), y[:, g:channels]), dim=1)
        out = torch.empty_like(residual)
        torch.addcmul(residual[:, :g], y[:, :g], gate, out=out[:, :g]).add_(shift)
        torch.add(residual[:, g:], y[:, g:channels], out=out[:, g:])
        return out


class PartialNetMLP(DeployMixin, nn.Module):
    """Pointwise MLP of a block: 1x1 conv, norm, activation, 1x1 conv (, PAT_sp).

    Deploy form: the norm folded into ``fc1`` (which gains a bias), PAT_sp folded into
    ``fc2`` (see :class:`PATSpatial`), the activation applied in place and the block's
    residual added into the output.

    Args:
        channels (int): Input and output channels.
        mlp_ratio (float): Hidden width as a multiple of ``channels``.
        act_cfg (dict): Activation config.
        norm_cfg (dict): Norm config.
        use_spatial_attn (bool): End with a PAT_sp layer. Defaults to False.
        deploy (bool): Build the inference form. Defaults to False.
    """

    def __init__(self, channels: int, mlp_ratio: float, act_cfg: dict, norm_cfg: dict,
                 use_spatial_attn: bool = False, deploy: bool = False):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.deploy = deploy
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=deploy)
        if not deploy:
            self.norm = build_norm_layer(norm_cfg, hidden)[1]
        self.act = build_activation_layer(act_cfg)
        folded_outputs = channels + 1 if use_spatial_attn else channels
        self.fc2 = nn.Conv2d(hidden, folded_outputs if deploy else channels, 1,
                             bias=deploy and use_spatial_attn)
        self.spatial_attn = PATSpatial(channels, norm_cfg, deploy=deploy) \
            if use_spatial_attn else None

    def _fold(self) -> None:
        self.fc1 = fuse_conv_norm(self.fc1, self.norm)
        del self.norm
        if self.spatial_attn is not None:
            self.fc2 = self.spatial_attn.fold_into(self.fc2)

    def forward(self, x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``mlp(x)``, plus ``residual`` if given (required by the inference form)."""
        if self.deploy:
            if residual is None:
                raise ValueError('the inference form of PartialNetMLP adds the block\'s '
                                 'residual into its output: pass residual=')
            hidden = activation_(pointwise_conv(x, self.fc1), self.act)
            if self.spatial_attn is not None:
                return self.spatial_attn.forward_folded(pointwise_conv(hidden, self.fc2),
                                                        residual)
            return pointwise_conv_add(hidden, self.fc2, residual)
        out = self.fc2(self.act(self.norm(self.fc1(x))))
        if self.spatial_attn is not None:
            out = self.spatial_attn(out)
        return out if residual is None else residual + out
