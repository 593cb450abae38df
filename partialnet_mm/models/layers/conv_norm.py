"""The stem and merging layers: a non-overlapping convolution followed by a BatchNorm."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from ..utils.deploy import DeployMixin
from ..utils.fuse import fuse_conv_norm


class ConvNorm(DeployMixin, nn.Module):
    """A bias-free ``kernel_size`` x ``kernel_size`` convolution with the same stride, then a
    norm layer (the stem, 4x4, and the merging layers between stages, 2x2).

    Deploy form: the norm folded into the convolution (``conv`` with a bias, no ``norm``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size, equal to the stride (non-overlapping patches).
        norm_cfg (dict): Norm config.
        deploy (bool): Build the inference form. Defaults to False.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 norm_cfg: dict, deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=kernel_size,
                              bias=deploy)
        if not deploy:
            self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Name the fix when a state dict of the other form (folded or not) comes in."""
        has_norm = any(k.startswith(prefix + 'norm.') for k in state_dict)
        if self.deploy and has_norm:
            raise ValueError(
                f'{prefix}norm.*: this state dict is not folded (it holds the BatchNorm the '
                f'inference form folds away); load it into the model built with deploy=False '
                f'and call switch_to_deploy(), or fold the checkpoint with '
                f'tools/reparameterize.py')
        if not self.deploy and not has_norm and prefix + 'conv.bias' in state_dict:
            raise ValueError(
                f'{prefix}conv.bias: this state dict is folded (written after '
                f'switch_to_deploy() or by tools/reparameterize.py); load it into a model '
                f'built with deploy=True (--cfg-options model.backbone.deploy=True)')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _fold(self) -> None:
        self.conv = fuse_conv_norm(self.conv, self.norm)
        del self.norm

    def forward(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """``norm(conv(x))``; with ``channels_last``, computed in (and returned in) the
        channels-last layout whatever ``x``'s is, without a channels-last copy of ``x`` (the
        convolution follows its weight's layout; autograd keeps ``x`` as it is)."""
        if channels_last:
            conv = self.conv
            x = F.conv2d(x, conv.weight.contiguous(memory_format=torch.channels_last),
                         conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        else:
            x = self.conv(x)
        return x if self.deploy else self.norm(x)
