"""A PartialNet block and a stage of them."""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath

from ..utils.deploy import DeployMixin
from ..utils.mixer_contract import SpatialMixer
from ..utils.ops import add_drop_path
from .mlp import PartialNetMLP


class PartialNetBlock(DeployMixin, nn.Module):
    """One PartialNet block: a spatial mixer, then the MLP, with residuals.

    With a mixer that does not carry its own residual (PConv, PAT_ch) the block computes
    ``x + drop_path(mlp(mixer(x)))`` (the mixer's output is not added on its own); with one
    that does (PAT_sf, :attr:`SpatialMixer.residual`) it computes ``y = mixer(x)``
    (``= x + mix(x)``) and ``y + drop_path(mlp(y))``.

    Training form: the residual and the drop path as one operation
    (:func:`~..utils.ops.add_drop_path`; the authors' form adds after mmcv's ``DropPath``).
    Deploy form: no drop path, and the MLP adds the residual into its own output.

    Args:
        spatial_mixing (SpatialMixer): The mixer (built by the backbone from its config).
        channels (int): Block width.
        mlp_ratio (float): MLP hidden ratio.
        drop_path (float): Stochastic depth rate of this block.
        act_cfg (dict): Activation config of the MLP.
        norm_cfg (dict): Norm config of the MLP.
        use_spatial_attn (bool): End the MLP with PAT_sp. Defaults to False.
        with_cp (bool): Activation checkpointing in training. Defaults to False.
        deploy (bool): Build the inference form. Defaults to False.
    """

    naive = False  # the authors' formulation; see set_naive_forward

    def __init__(self, spatial_mixing: SpatialMixer, channels: int, mlp_ratio: float,
                 drop_path: float, act_cfg: dict, norm_cfg: dict,
                 use_spatial_attn: bool = False, with_cp: bool = False,
                 deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.spatial_mixing = spatial_mixing
        self.mlp = PartialNetMLP(channels, mlp_ratio, act_cfg, norm_cfg, use_spatial_attn,
                                 deploy=deploy)
        self.drop_path = DropPath(drop_path) if drop_path > 0. and not deploy else \
            nn.Identity()
        self.with_cp = with_cp

    @property
    def mixing_residual(self) -> bool:
        """Whether the mixer's output includes its input (PAT_sf blocks)."""
        return self.spatial_mixing.residual

    def _fold(self) -> None:
        self.drop_path = nn.Identity()  # inference: stochastic depth is the identity

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial_mixing(x)
        shortcut = y if self.mixing_residual else x
        if self.deploy:
            return self.mlp(y, residual=shortcut)
        out = self.mlp(y)
        if self.naive or not (self.training and isinstance(self.drop_path, DropPath)):
            return shortcut + self.drop_path(out)
        return add_drop_path(shortcut, out, self.drop_path.drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class PartialNetStage(nn.Sequential):
    """A stage: an optional merging (downsampling) layer, then its blocks.

    Args:
        downsample (nn.Module, optional): Merging layer at the stage's start, or None.
        blocks (list[nn.Module]): The stage's blocks.
    """

    def __init__(self, downsample: Optional[nn.Module], blocks: List[nn.Module]):
        super().__init__()
        if downsample is not None:
            self.add_module('downsample', downsample)
        self.add_module('blocks', nn.Sequential(*blocks))
