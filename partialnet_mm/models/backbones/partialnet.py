"""PartialNet backbone ("Partial Channel Network: Compute Fewer, Perform Better").

The architecture is pinned by ``SPEC.md``: a 4x4 patch stem, four stages of widths
C, 2C, 4C, 8C joined by 2x2 merging convolutions, blocks that mix space with a partial
convolution plus a partial attention on the untouched channels (PAT_ch in stages 0-2,
PAT_sf in the last stage), and a 1x1-conv MLP (optionally ending in PAT_sp).
"""
import copy
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import (PartialConv, PATChannel, PATSelfAttention, PATSpatial,
                      partial_channels)
from ..layers.deploy import DeployPartialNetBlock
from ..utils import fuse_conv_norm

# Hyper-parameters shared by every preset; an arch dict may override any of them.
ARCH_DEFAULTS = dict(
    n_div=4,  # the convolved part of each partial conv is C_i / n_div channels
    mlp_ratio=2.,
    num_heads=4,  # heads of the last stage's self-attention (PAT_sf)
    act_cfg=dict(type='ReLU', inplace=True),
    drop_path_rate=0.,
    use_spatial_attn=False,  # PAT_sp at the end of every MLP
    # convolved channels per stage: None (channels // n_div), an int (every block of the
    # stage) or one int per block (a learned split, e.g. exported from DPConv)
    conv_channels=None,
)
ARCH_REQUIRED_KEYS = ('embed_dims', 'depths')


def _preset(embed_dims, depths, act, drop_path_rate, use_spatial_attn):
    act_cfg = dict(type='GELU') if act == 'GELU' else dict(type='ReLU', inplace=True)
    return dict(embed_dims=embed_dims, depths=depths, act_cfg=act_cfg,
                drop_path_rate=drop_path_rate, use_spatial_attn=use_spatial_attn)


class ConvNorm(nn.Sequential):
    """A bias-free convolution followed by a norm layer (the stem and merging layers).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size, equal to the stride (non-overlapping patches).
        norm_cfg (dict): Norm config.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 norm_cfg: dict):
        super().__init__()
        self.add_module('conv', nn.Conv2d(in_channels, out_channels, kernel_size,
                                          stride=kernel_size, bias=False))
        self.add_module('norm', build_norm_layer(norm_cfg, out_channels)[1])


class PartialNetMLP(nn.Module):
    """Pointwise MLP of a block: 1x1 conv, norm, activation, 1x1 conv (, PAT_sp).

    Args:
        channels (int): Input and output channels.
        mlp_ratio (float): Hidden width as a multiple of ``channels``.
        act_cfg (dict): Activation config.
        norm_cfg (dict): Norm config.
        use_spatial_attn (bool): End with a PAT_sp layer.
    """

    def __init__(self, channels: int, mlp_ratio: float, act_cfg: dict, norm_cfg: dict,
                 use_spatial_attn: bool = False):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.norm = build_norm_layer(norm_cfg, hidden)[1]
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.spatial_attn = PATSpatial(channels, norm_cfg) if use_spatial_attn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.norm(self.fc1(x))))
        if self.spatial_attn is not None:
            x = self.spatial_attn(x)
        return x


class PartialNetBlock(nn.Module):
    """One PartialNet block: partial spatial mixing, then the MLP, with residuals.

    With channel attention (PAT_ch) the block computes ``x + drop_path(mlp(mixing(x)))``
    (the mixing output is not added on its own); with self-attention (PAT_sf) it computes
    ``y = x + mixing(x)`` and ``y + drop_path(mlp(y))``.

    Args:
        channels (int): Block width.
        conv_channels (int): Channels of the partial 3x3 convolution.
        mixer (str): ``'channel_attn'`` (PAT_ch), ``'self_attn'`` (PAT_sf) or ``'pconv'``
            (plain PConv, no attention).
        mlp_ratio (float): MLP hidden ratio.
        drop_path (float): Stochastic depth rate of this block.
        act_cfg (dict): Activation config of the MLP.
        norm_cfg (dict): Norm config (BN family).
        use_spatial_attn (bool): End the MLP with PAT_sp.
        num_heads (int): Heads of PAT_sf.
        attn_drop_rate (float): Attention dropout of PAT_sf.
        proj_drop_rate (float): Projection dropout of PAT_sf.
        attn_norm_cfg (dict): Token norm config of PAT_sf.
        with_cp (bool): Use activation checkpointing in training.
    """

    def __init__(self, channels: int, conv_channels: int, mixer: str, mlp_ratio: float,
                 drop_path: float, act_cfg: dict, norm_cfg: dict,
                 use_spatial_attn: bool = False, num_heads: int = 4,
                 attn_drop_rate: float = 0.1, proj_drop_rate: float = 0.1,
                 attn_norm_cfg: dict = dict(type='LN', eps=1e-6), with_cp: bool = False):
        super().__init__()
        if mixer == 'channel_attn':
            self.spatial_mixing = PATChannel(channels, conv_channels, norm_cfg=norm_cfg)
        elif mixer == 'self_attn':
            self.spatial_mixing = PATSelfAttention(
                channels, conv_channels, num_heads=num_heads,
                attn_drop_rate=attn_drop_rate, proj_drop_rate=proj_drop_rate,
                norm_cfg=attn_norm_cfg)
        elif mixer == 'pconv':
            self.spatial_mixing = PartialConv(channels, conv_channels)
        else:
            raise ValueError(f"mixer must be 'channel_attn', 'self_attn' or 'pconv', "
                             f'got {mixer!r}')
        self.mixing_residual = mixer == 'self_attn'
        self.mlp = PartialNetMLP(channels, mlp_ratio, act_cfg, norm_cfg, use_spatial_attn)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.with_cp = with_cp

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mixing_residual:
            x = x + self.spatial_mixing(x)
            return x + self.drop_path(self.mlp(x))
        return x + self.drop_path(self.mlp(self.spatial_mixing(x)))

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


@MODELS.register_module()
class PartialNet(BaseModule):
    """PartialNet backbone for classification, detection and segmentation.

    A PyTorch implementation of `Partial Channel Network: Compute Fewer, Perform Better
    <https://arxiv.org/abs/2502.01303>`_, numerically equal to the authors' model (their
    checkpoints convert with ``tools/convert_checkpoint.py``).

    Args:
        arch (str | dict): A preset name in :attr:`arch_settings` (``'t0'``, ``'t1'``,
            ``'t2'``, ``'s'``, ``'m'``, ``'l'``) or a dict with at least ``embed_dims``
            (int C, stage widths C·2^i; or one width per stage) and ``depths``; optional keys
            ``n_div``, ``mlp_ratio``, ``num_heads``, ``act_cfg``, ``drop_path_rate``,
            ``use_spatial_attn``, ``conv_channels`` default to :data:`ARCH_DEFAULTS`.
            ``conv_channels`` gives each stage's convolved widths (None: ``C_i // n_div``;
            an int for every block; or one int per block). Defaults to ``'t0'``.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned. Defaults to all
            four, ``(0, 1, 2, 3)``.
        frozen_stages (int): Freeze the stem (0) and additionally stages ``0..k-1``
            (``k`` >= 1): no gradients, norm layers in eval mode. -1 freezes nothing.
            Defaults to -1.
        norm_eval (bool): Keep every norm layer in eval mode (frozen statistics) while
            training. Defaults to False.
        with_cp (bool): Activation checkpointing per block, trading compute for memory.
            Defaults to False.
        drop_path_rate (float, optional): Stochastic depth at the last block (linearly
            increasing from 0). Defaults to None, the arch's own rate.
        norm_cfg (dict): Norm config of every norm except the self-attention's.
            Defaults to ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict, optional): Activation config; None takes the arch's.
        attn_norm_cfg (dict): Token norm of PAT_sf. Defaults to LN with eps 1e-6.
        attn_drop_rate (float): Attention dropout of PAT_sf. Defaults to 0.1.
        proj_drop_rate (float): Projection dropout of PAT_sf. Defaults to 0.1.
        with_out_norm (bool): Normalise each returned stage output with its own norm
            layer (``norm{i}``), as the authors' dense-prediction backbone does. Set False for
            classification. Defaults to True.
        init_cfg (dict | list[dict], optional): Initialisation config. ``dict(type=
            'Pretrained', checkpoint=..., prefix=...)`` loads a converted checkpoint (an
            authors' checkpoint is converted on the fly); a missing local file gives one
            warning and training from scratch. Defaults to None: the authors' init
            (truncated normal std 0.02 for conv/linear weights, zero biases, LayerNorm 1/0).
        dpconv (dict, optional): Learn the split of the blocks' partial convolutions
            (DPConv, :mod:`partialnet_mm.models.layers.dpconv`), starting from the arch's
            split. Keys (defaults in ``DPCONV_DEFAULTS``): ``stages`` (None: all),
            ``budget`` (b), ``warmup_epochs``, ``complexity_weight``, ``order_weight``,
            ``gate_init``. Train with ``DPConvHook``; export with
            ``tools/export_dpconv.py``. Defaults to None (fixed split; state-dict keys as
            without this option).
    """

    arch_settings = {
        't0': _preset(32, (1, 2, 8, 2), 'GELU', 0.0, False),
        't1': _preset(48, (1, 2, 8, 2), 'GELU', 0.02, True),
        't2': _preset(64, (2, 2, 6, 4), 'ReLU', 0.05, False),
        's': _preset(96, (2, 2, 9, 4), 'ReLU', 0.1, False),
        'm': _preset(128, (2, 3, 16, 4), 'ReLU', 0.2, False),
        'l': _preset(160, (2, 3, 20, 4), 'ReLU', 0.3, False),
    }
    stem_stride = 4
    merge_stride = 2

    def __init__(self,
                 arch: Union[str, dict] = 't0',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: Optional[float] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: Optional[dict] = None,
                 attn_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 attn_drop_rate: float = 0.1,
                 proj_drop_rate: float = 0.1,
                 with_out_norm: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 dpconv: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        self.arch_name = arch if isinstance(arch, str) else None
        self.in_channels = in_channels
        self.embed_dims = self.arch['embed_dims']
        self.depths = self.arch['depths']
        self.num_stages = len(self.depths)
        self.out_indices = self._check_out_indices(out_indices, self.num_stages)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'frozen_stages must be in [-1, {self.num_stages}] (-1: nothing, 0: stem, '
                f'k: stem and stages 0..k-1), got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = False  # see switch_to_deploy
        self.deploy_memory_format = None
        self.with_out_norm = with_out_norm
        act_cfg = act_cfg if act_cfg is not None else self.arch['act_cfg']
        if drop_path_rate is None:
            drop_path_rate = self.arch['drop_path_rate']
        total_depth = sum(self.depths)
        dpr = torch.linspace(0, drop_path_rate, total_depth, device='cpu').tolist()

        self.stem = ConvNorm(in_channels, self.embed_dims[0], self.stem_stride, norm_cfg)
        self.stages = nn.ModuleList()
        block_idx = 0
        for i, (channels, depth) in enumerate(zip(self.embed_dims, self.depths)):
            downsample = None if i == 0 else ConvNorm(
                self.embed_dims[i - 1], channels, self.merge_stride, norm_cfg)
            conv_channels = self.arch['conv_channels'][i]
            mixer = 'self_attn' if i == self.num_stages - 1 else 'channel_attn'
            blocks = [
                PartialNetBlock(
                    channels, conv_channels[j], mixer, mlp_ratio=self.arch['mlp_ratio'],
                    drop_path=dpr[block_idx + j], act_cfg=act_cfg, norm_cfg=norm_cfg,
                    use_spatial_attn=self.arch['use_spatial_attn'],
                    num_heads=self.arch['num_heads'], attn_drop_rate=attn_drop_rate,
                    proj_drop_rate=proj_drop_rate, attn_norm_cfg=attn_norm_cfg,
                    with_cp=with_cp) for j in range(depth)
            ]
            block_idx += depth
            self.stages.append(PartialNetStage(downsample, blocks))
        self.dpconv = None
        if dpconv is not None:  # learned splits: see layers/dpconv.py
            from ..layers.dpconv import enable_dpconv
            self.dpconv = enable_dpconv(
                self, dpconv, norm_cfg=norm_cfg, attn_norm_cfg=attn_norm_cfg,
                attn_drop_rate=attn_drop_rate, proj_drop_rate=proj_drop_rate)
        if with_out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """Resolve ``arch`` to a full settings dict with one width per stage."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(
                    f'Unknown PartialNet arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_settings)} or pass a dict with keys '
                    f'{list(ARCH_REQUIRED_KEYS)} (optional: {sorted(ARCH_DEFAULTS)}).')
            settings = dict(ARCH_DEFAULTS, **copy.deepcopy(cls.arch_settings[arch.lower()]))
        elif isinstance(arch, dict):
            missing = [k for k in ARCH_REQUIRED_KEYS if k not in arch]
            if missing:
                raise ValueError(
                    f'PartialNet arch dict is missing {missing}; it needs '
                    f'{list(ARCH_REQUIRED_KEYS)} (optional, with defaults: '
                    f'{ARCH_DEFAULTS}). Got keys {sorted(arch)}.')
            unknown = sorted(set(arch) - set(ARCH_REQUIRED_KEYS) - set(ARCH_DEFAULTS))
            if unknown:
                raise ValueError(f'PartialNet arch dict has unknown keys {unknown}; allowed: '
                                 f'{list(ARCH_REQUIRED_KEYS) + sorted(ARCH_DEFAULTS)}.')
            settings = dict(ARCH_DEFAULTS, **copy.deepcopy(arch))
        else:
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        depths = tuple(int(d) for d in settings['depths'])
        if not depths or min(depths) < 1:
            raise ValueError(f'PartialNet depths must be positive, got {depths}')
        dims = settings['embed_dims']
        if isinstance(dims, int):
            dims = tuple(dims * 2**i for i in range(len(depths)))
        dims = tuple(int(d) for d in dims)
        if len(dims) != len(depths):
            raise ValueError(f'PartialNet embed_dims {dims} and depths {depths} must have '
                             f'one entry per stage')
        settings.update(embed_dims=dims, depths=depths)
        settings['conv_channels'] = cls._resolve_conv_channels(settings)
        return settings

    @staticmethod
    def _resolve_conv_channels(settings: dict) -> tuple:
        """``arch['conv_channels']`` as one tuple of per-block widths per stage."""
        dims, depths, spec = settings['embed_dims'], settings['depths'], settings['conv_channels']
        form = ('None (channels // n_div), an int (every block of the stage) or a list with '
                'one int per block')
        if spec is None:
            spec = [None] * len(depths)
        if not isinstance(spec, (list, tuple)) or len(spec) != len(depths):
            raise ValueError(f'PartialNet arch conv_channels must have one entry per stage '
                             f'({len(depths)}), each {form}; got {spec!r}')
        resolved = []
        for i, (entry, channels, depth) in enumerate(zip(spec, dims, depths)):
            if entry is None:
                widths = (partial_channels(channels, settings['n_div']), ) * depth
            elif isinstance(entry, int) and not isinstance(entry, bool):
                widths = (entry, ) * depth
            elif isinstance(entry, (list, tuple)) and len(entry) == depth:
                widths = tuple(entry)
            else:
                raise ValueError(f'PartialNet arch conv_channels[{i}] must be {form} '
                                 f'(stage {i} has {depth} blocks); got {entry!r}')
            for j, width in enumerate(widths):
                if isinstance(width, bool) or not isinstance(width, int) or not \
                        0 < width < channels:
                    raise ValueError(
                        f'PartialNet arch conv_channels[{i}][{j}] = {width!r}: stage {i} is '
                        f'{channels} channels wide, so its convolved part must be an int in '
                        f'[1, {channels - 1}] (at least one channel stays for the attention)')
                if i == len(depths) - 1 and (channels - width) % settings['num_heads']:
                    raise ValueError(
                        f'PartialNet arch conv_channels[{i}][{j}] = {width}: the last stage\'s '
                        f'self-attention gets the other {channels - width} channels, which '
                        f'{settings["num_heads"]} heads cannot share; choose a width that '
                        f'leaves a multiple of num_heads.')
            resolved.append(widths)
        return tuple(resolved)

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int], num_stages: int) -> tuple:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        indices = []
        for i in out_indices:
            if not -num_stages <= i < num_stages:
                raise ValueError(f'out_indices {tuple(out_indices)} out of range: PartialNet '
                                 f'has stages 0..{num_stages - 1}')
            indices.append(i % num_stages)
        if len(set(indices)) != len(indices):
            raise ValueError(f'out_indices {tuple(out_indices)} repeat a stage')
        return tuple(sorted(indices))

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned feature, in order (for the neck's ``in_channels``)."""
        return [self.embed_dims[i] for i in self.out_indices]

    @property
    def total_stride(self) -> int:
        return self.stem_stride * self.merge_stride**(self.num_stages - 1)

    def aux_losses(self) -> Dict[str, torch.Tensor]:
        """Losses this backbone adds to the model's loss dict: DPConv's complexity and order
        terms (``{}`` with dpconv off). ``partialnet_mm.engine.attach_aux_losses`` (done by
        ``DPConvHook``) merges them into the loss dict of mmdet, mmseg and mmpretrain models.
        """
        if self.dpconv is None:
            return {}
        from ..layers.dpconv import dpconv_losses
        return dpconv_losses(self, self.dpconv)

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        cfg = self.init_cfg
        if cfg is None:
            self._default_init()
            self._is_init = True
            return
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ...checkpoint import load_pretrained_backbone
            ckpt = cfg.get('checkpoint')
            if ckpt is None:
                raise ValueError("init_cfg type 'Pretrained' needs a 'checkpoint'")
            if '://' not in ckpt and not osp.exists(ckpt):
                warnings.warn(
                    f'PartialNet: pretrained checkpoint {ckpt!r} not found; training '
                    f'{self.arch_name or "this PartialNet"} FROM SCRATCH. Convert the '
                    f"authors' ImageNet weights with tools/convert_checkpoint.py to that "
                    f"path, or set model.backbone.init_cfg=None to silence this.",
                    stacklevel=2)
                self._default_init()
                self._is_init = True
                return
            self._default_init()
            load_pretrained_backbone(self, ckpt, prefix=cfg.get('prefix'),
                                     map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def _default_init(self):
        """The authors' initialisation (also the start of a pretrained load)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ freezing
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if self.with_out_norm and i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        if mode and self.deploy:
            raise RuntimeError(
                'This PartialNet was switched to deploy (inference) form: its BatchNorms are '
                'folded into the convolutions and it cannot be trained. Build a new model '
                'and load the original checkpoint to train.')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ deploy
    deploy_memory_formats = ('auto', 'channels_last', 'contiguous')

    def switch_to_deploy(self, memory_format: str = 'auto') -> 'PartialNet':
        """Convert to the fused inference form, in place; outputs stay the same.

        Folds every BatchNorm that sits next to a convolution into it (stem, merging layers,
        MLP, PAT_ch's gate and post-gating norms, PAT_sp), writes the two parts of each
        partial convolution into one tensor instead of splitting and concatenating, and
        gathers each PAT_sf layer's iRPE bias once per feature size. The output norms
        ``norm{i}`` stay (they have no adjacent convolution on the output path). See
        :mod:`partialnet_mm.models.layers.deploy`.

        Inference only, and final: call it in eval mode, after loading the weights (the
        folded model has other state-dict keys; a normal checkpoint no longer loads into it).
        The model refuses ``train()`` afterwards. Calling it again only changes
        ``memory_format``.

        Args:
            memory_format (str): Layout the fused model computes in: ``'channels_last'``,
                ``'contiguous'`` (NCHW) or ``'auto'``: channels-last for CPU inputs (measured
                faster there, see README "Deployment"), NCHW otherwise. The input is
                converted on entry; channels-last outputs have the same values. Defaults to
                ``'auto'``.

        Returns:
            PartialNet: ``self``.
        """
        if memory_format not in self.deploy_memory_formats:
            raise ValueError(f'memory_format must be one of {self.deploy_memory_formats}, '
                             f'got {memory_format!r}')
        if self.training:
            raise RuntimeError(
                'switch_to_deploy() is for inference: call model.eval() first (it folds the '
                'BatchNorms\' running statistics, which training would keep updating).')
        if not self.deploy:
            self.stem = fuse_conv_norm(self.stem.conv, self.stem.norm)
            for stage in self.stages:
                if hasattr(stage, 'downsample'):
                    stage.downsample = fuse_conv_norm(stage.downsample.conv,
                                                      stage.downsample.norm)
                for j, block in enumerate(stage.blocks):
                    stage.blocks[j] = DeployPartialNetBlock.from_block(block)
            self.requires_grad_(False)
            self.deploy = True
        self.deploy_memory_format = memory_format
        return self

    def _deploy_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format the deploy model computes in on its device."""
        channels_last = self.deploy_memory_format == 'channels_last' or (
            self.deploy_memory_format == 'auto' and x.device.type == 'cpu')
        return x.contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'PartialNet expects a 4-D (N, C, H, W) tensor, got {shape}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'PartialNet was built for {self.in_channels} input channels but got '
                f'{x.shape[1]} (input shape {tuple(x.shape)}); set in_channels or fix the '
                f'input (e.g. convert grayscale images to RGB).')
        if min(x.shape[2:]) < self.total_stride:
            raise ValueError(
                f'PartialNet input {tuple(x.shape[2:])} is smaller than its total stride '
                f'{self.total_stride}: every side must be at least {self.total_stride} '
                f'pixels (resize or pad the input).')

    def forward(self, x: torch.Tensor) -> tuple:
        self._check_input(x)
        if self.deploy:
            x = self._deploy_layout(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x) if self.with_out_norm else x)
        return tuple(outs)


def partialnet_channels(arch: Union[str, dict],
                        out_indices: Sequence[int] = (0, 1, 2, 3)) -> List[int]:
    """Channels of the features a ``PartialNet(arch, out_indices)`` returns.

    For configs: ``neck=dict(in_channels=partialnet_channels(arch))``.
    """
    dims = PartialNet.parse_arch(arch)['embed_dims']
    return [dims[i] for i in PartialNet._check_out_indices(out_indices, len(dims))]
