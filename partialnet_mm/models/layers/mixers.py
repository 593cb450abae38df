"""The spatial mixers of a block: PConv and the partial-attention convolutions PAT_ch, PAT_sf.

Every mixer splits its input along channels into a *convolved* part (the first
``conv_channels`` channels, a 3x3 convolution) and an *untouched* part (the rest), which PConv
passes through unchanged and the PAT mixers send through an attention branch; the two parts
are joined again in the same order.

Mixers are built from the :data:`MIXERS` registry, so a backbone stage can use any of them
(or a user's own) through ``PartialNet(mixer_cfgs=...)``. Every mixer subclasses
:class:`~..utils.mixer_contract.SpatialMixer`, which says what a mixer provides (``residual``,
``has_inference_form``, ``adapts_state_dict``, ``unexpected_key_hint``) and who relies on it.
"""
import inspect
from typing import Optional

import torch
import torch.nn as nn
from mmengine.registry import Registry

from ..utils.deploy import DeployMixin
from ..utils.exporting import is_exporting
from ..utils.mixer_contract import SpatialMixer
from ..utils.ops import dense_channels_last_grad
from .attention import PartialChannelAttention, PartialSelfAttention

MIXERS = Registry('PartialNet spatial mixer')


class PartialConv(DeployMixin, SpatialMixer):
    """PConv: a 3x3 convolution over the first ``conv_channels`` channels only.

    Training form: split, convolve, attend (subclasses), concatenate. Inference form: one
    output tensor into which the convolved and the attended part are written (no split
    copies, no concatenation; the input is never modified, it feeds the residual).

    Args:
        channels (int): Input and output channels.
        conv_channels (int): Channels that are convolved (the first ones); the remaining
            ``channels - conv_channels`` are the untouched part.
        deploy (bool): Build the inference form (the same parameters). Defaults to False.
    """

    def __init__(self, channels: int, conv_channels: int, deploy: bool = False):
        super().__init__()
        if not 0 < conv_channels <= channels:
            raise ValueError(f'conv_channels must be in [1, {channels}], got {conv_channels}')
        self.channels = channels
        self.conv_channels = conv_channels
        self.untouched_channels = channels - conv_channels
        self.deploy = deploy
        self.conv = nn.Conv2d(conv_channels, conv_channels, 3, 1, 1, bias=False)
        self.attn: Optional[nn.Module] = None

    def _fold(self) -> None:
        pass  # the convolution has no norm; the attention branch folds itself

    def unexpected_key_hint(self, key: str) -> Optional[str]:
        """A learned split's gates: the export a DPConv checkpoint needs first."""
        if key == 'conv.gates':
            return (f'conv.gates: this checkpoint has learned splits (a DPConv training '
                    f'checkpoint) and does not load into a plain {type(self).__name__}; export '
                    f'it with tools/export_dpconv.py and build the backbone with the arch and '
                    f'mixer_cfgs it prints')
        return None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        hint = self.unexpected_key_hint('conv.gates') if prefix + 'conv.gates' in state_dict \
            else None
        if hint:
            raise ValueError(f'{prefix}{hint}')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward_untouched(self, x: torch.Tensor, out: Optional[torch.Tensor] = None,
                          residual: bool = False) -> torch.Tensor:
        """The untouched part's output (``+ x`` with ``residual``), into ``out`` if given."""
        if self.attn is not None:
            return self.attn(x, out, residual)
        if out is None:
            return x + x if residual else x
        return torch.add(x, x, out=out) if residual else out.copy_(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv_channels
        if not self.deploy or is_exporting():
            x1, x2 = torch.split(x, [c, self.untouched_channels], dim=1)
            untouched = self.forward_untouched(x2)
            if not self.naive:
                untouched = dense_channels_last_grad(untouched)
            y = torch.cat((self.conv(x1), untouched), dim=1)
            return x + y if self.residual else y
        x1, x2 = x[:, :c], x[:, c:]
        out = torch.empty_like(x)
        if self.residual:
            torch.add(x1, self.conv(x1), out=out[:, :c])
        else:
            out[:, :c] = self.conv(x1)
        self.forward_untouched(x2, out[:, c:], self.residual)
        return out

    def extra_repr(self) -> str:
        return f'channels={self.channels}, conv_channels={self.conv_channels}'


MIXERS.register_module(name='PConv', module=PartialConv)


@MIXERS.register_module()
class PATChannel(PartialConv):
    """PAT_ch: PConv whose untouched channels go through partial channel attention.

    Args:
        channels (int): Input and output channels.
        conv_channels (int): Channels convolved by the 3x3 convolution.
        norm_cfg (dict): Norm config of the attention branch. Defaults to BN.
        deploy (bool): Build the inference form. Defaults to False.
    """

    def __init__(self, channels: int, conv_channels: int, norm_cfg: dict = dict(type='BN'),
                 deploy: bool = False):
        super().__init__(channels, conv_channels, deploy=deploy)
        self.attn = PartialChannelAttention(self.untouched_channels, norm_cfg=norm_cfg,
                                            deploy=deploy)


@MIXERS.register_module()
class PATSelfAttention(PartialConv):
    """PAT_sf: PConv whose untouched channels go through self-attention with iRPE.

    A PAT_sf mixer carries its own residual connection (``residual = True``): it returns
    ``x + mix(x)``, and its block adds the MLP of that sum.

    Args:
        channels (int): Input and output channels.
        conv_channels (int): Channels convolved by the 3x3 convolution.
        num_heads (int): Attention heads. Defaults to 4.
        attn_drop_rate (float): Attention dropout. Defaults to 0.1.
        proj_drop_rate (float): Projection dropout. Defaults to 0.1.
        attn_norm_cfg (dict): Token norm config. Defaults to ``dict(type='LN', eps=1e-6)``.
        deploy (bool): Build the inference form. Defaults to False.
    """

    residual = True

    def __init__(self, channels: int, conv_channels: int, num_heads: int = 4,
                 attn_drop_rate: float = 0.1, proj_drop_rate: float = 0.1,
                 attn_norm_cfg: dict = dict(type='LN', eps=1e-6), deploy: bool = False):
        super().__init__(channels, conv_channels, deploy=deploy)
        self.attn = PartialSelfAttention(
            self.untouched_channels, num_heads=num_heads, attn_drop_rate=attn_drop_rate,
            proj_drop_rate=proj_drop_rate, norm_cfg=attn_norm_cfg, deploy=deploy)


def build_mixer(cfg: dict, channels: int, conv_channels: int, **defaults) -> nn.Module:
    """A mixer from its config: ``MIXERS.get(cfg['type'])(channels, conv_channels, **kw)``.

    ``defaults`` (the backbone's settings: ``norm_cfg``, ``num_heads``, ``deploy``, ...) fill
    in the keyword arguments the mixer class takes and ``cfg`` does not set; the others are
    not passed, so a mixer declares what it needs by its signature. The class must subclass
    :class:`~..utils.mixer_contract.SpatialMixer` (what the block, the deploy walker and
    checkpoint loading rely on).
    """
    cfg = dict(cfg)
    name = cfg.pop('type', None)
    cls = MIXERS.get(name) if isinstance(name, str) else name
    if cls is None:
        raise KeyError(f'PartialNet: unknown mixer type {name!r}; registered mixers: '
                       f'{sorted(MIXERS.module_dict)} (register your own with '
                       f'partialnet_mm.models.MIXERS.register_module())')
    if not (isinstance(cls, type) and issubclass(cls, SpatialMixer)):
        raise TypeError(
            f'PartialNet: mixer type {name!r} ({getattr(cls, "__name__", cls)!r}) is not a '
            f'partialnet_mm.models.SpatialMixer; subclass it (it declares what a mixer '
            f'provides: residual, has_inference_form, adapts_state_dict, '
            f'unexpected_key_hint) instead of nn.Module')
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key, value in defaults.items():
        if key not in cfg and (takes_any or key in params):
            cfg[key] = value
    return cls(channels, conv_channels, **cfg)
