"""PartialNet backbone ("Partial Channel Network: Compute Fewer, Perform Better").

A 4x4 patch stem, four stages of widths C, 2C, 4C, 8C joined by 2x2 merging convolutions,
blocks that mix space with a partial convolution plus a partial attention on the untouched
channels (PAT_ch in stages 0-2, PAT_sf in the last stage), and a 1x1-conv MLP (optionally
ending in PAT_sp). ``docs/architecture.md`` describes the network; :mod:`..archs` holds the
presets.
"""
import copy
import logging
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..archs import ARCH_SETTINGS, check_act_cfg, check_out_indices, parse_arch
from ..layers import ConvNorm, PartialNetBlock, PartialNetStage, build_mixer
from ..utils.deploy import switch_to_deploy
from ..utils.ops import dense_channels_last_grad

# The mixer of each stage when ``mixer_cfgs`` does not set one: PAT_ch, and PAT_sf last.
DEFAULT_MIXER = 'PATChannel'
LAST_STAGE_MIXER = 'PATSelfAttention'


@MODELS.register_module()
class PartialNet(BaseModule):
    """PartialNet backbone for classification, detection and segmentation.

    A PyTorch implementation of `Partial Channel Network: Compute Fewer, Perform Better
    <https://arxiv.org/abs/2502.01303>`_, numerically equal to the authors' model (their
    checkpoints convert with ``tools/convert_checkpoint.py``).

    Args:
        arch (str | dict): A preset name in :data:`~..archs.ARCH_SETTINGS` (``'t0'``,
            ``'t1'``, ``'t2'``, ``'s'``, ``'m'``, ``'l'``) or a dict with at least
            ``embed_dims`` (int C, stage widths C·2^i; or one width per stage) and
            ``depths``; optional keys ``n_div``, ``mlp_ratio``, ``num_heads``, ``act_cfg``,
            ``drop_path_rate``, ``use_spatial_attn``, ``conv_channels`` default to
            :data:`~..archs.ARCH_DEFAULTS`. ``conv_channels`` gives each stage's convolved
            widths (None: ``C_i // n_div``; an int for every block; or one int per block).
            Defaults to ``'t0'``.
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
        mixer_cfgs (dict | Sequence[dict | None], optional): The spatial mixer of each
            stage, built from :data:`~..layers.MIXERS`: one config for every stage, or one
            per stage (None keeps that stage's default). Defaults to None: PAT_ch
            (``'PATChannel'``) in every stage but the last, PAT_sf
            (``'PATSelfAttention'``) there. The backbone passes each mixer ``channels``,
            ``conv_channels`` and those of ``norm_cfg``, ``num_heads``, ``attn_drop_rate``,
            ``proj_drop_rate``, ``attn_norm_cfg`` and ``deploy`` its class takes and its
            config does not set. Other modules register more mixers (e.g. one that learns
            the split).
        with_out_norm (bool): Normalise each returned stage output with its own norm
            layer (``norm{i}``), as the authors' dense-prediction backbone does. Set False for
            classification. Defaults to True.
        deploy (bool): Build the folded inference form directly (what
            :meth:`switch_to_deploy` makes of a trained model), e.g. to load a checkpoint
            written by ``tools/reparameterize.py``. Inference only. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config, applied as written
            (mmengine's initialisers). None: :attr:`default_init_cfg`, the authors' init.
            ``dict(type='PartialNetPretrained', checkpoint=..., prefix=...)`` loads a
            converted checkpoint, checked (an authors' checkpoint is converted on the fly; a
            missing local file stops with the fix;
            :class:`partialnet_mm.checkpoint.PartialNetPretrained`). mmengine's spelling
            ``type='Pretrained'`` is read as that checked loader, placed last as mmengine
            places ``Pretrained``; alone it starts from :attr:`default_init_cfg`, as it
            always did. ``[]``: no initialisation (PyTorch's, from construction).
    """

    arch_settings = ARCH_SETTINGS
    # The authors' initialisation (their cls_init_weights): truncated normal, std 0.02 cut at
    # +-2, for every conv and linear weight, zero biases, LayerNorm 1 and 0. mmengine matches
    # a layer by its class's or its direct bases' names, so a direct nn.Conv2d subclass is
    # included (tests/test_backbone.py checks every layer is). BatchNorms keep PyTorch's 1 and
    # 0, the iRPE tables their zeros.
    default_init_cfg = [
        dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
        dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.),
    ]
    pretrained_init = 'PartialNetPretrained'  # the checked loader (partialnet_mm.checkpoint)
    naive = False  # the authors' layout (NCHW everywhere); see set_naive_forward
    stem_stride = 4
    merge_stride = 2
    deploy_memory_formats = ('auto', 'channels_last', 'contiguous')

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
                 mixer_cfgs: Optional[Union[dict, Sequence[Optional[dict]]]] = None,
                 with_out_norm: bool = True,
                 deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=self._resolve_init_cfg(init_cfg))
        self.arch = parse_arch(arch)
        self.arch_name = arch if isinstance(arch, str) else None
        self.in_channels = in_channels
        self.embed_dims = self.arch['embed_dims']
        self.depths = self.arch['depths']
        self.num_stages = len(self.depths)
        self.out_indices = check_out_indices(out_indices, self.num_stages)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'frozen_stages must be in [-1, {self.num_stages}] (-1: nothing, 0: stem, '
                f'k: stem and stages 0..k-1), got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_out_norm = with_out_norm
        self.deploy = deploy
        self.deploy_memory_format = 'auto'
        self.mixer_cfgs = self._resolve_mixer_cfgs(mixer_cfgs)
        act_cfg = check_act_cfg(act_cfg) if act_cfg is not None else self.arch['act_cfg']
        source = 'drop_path_rate'
        if drop_path_rate is None:
            drop_path_rate, source = self.arch['drop_path_rate'], "the arch's drop_path_rate"
        if not 0 <= drop_path_rate < 1:
            raise ValueError(
                f'PartialNet: {source} must be in [0, 1) (the probability of dropping the '
                f'last block\'s residual branch; the earlier blocks\' rise linearly from 0 to '
                f'it), got {drop_path_rate}')
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        mixer_defaults = dict(norm_cfg=norm_cfg, num_heads=self.arch['num_heads'],
                              attn_drop_rate=attn_drop_rate, proj_drop_rate=proj_drop_rate,
                              attn_norm_cfg=attn_norm_cfg, deploy=deploy)

        self.stem = ConvNorm(in_channels, self.embed_dims[0], self.stem_stride, norm_cfg,
                             deploy=deploy)
        self.stages = nn.ModuleList()
        block_idx = 0
        for i, (channels, depth) in enumerate(zip(self.embed_dims, self.depths)):
            downsample = None if i == 0 else ConvNorm(
                self.embed_dims[i - 1], channels, self.merge_stride, norm_cfg, deploy=deploy)
            blocks = []
            for j in range(depth):
                try:
                    mixer = build_mixer(self.mixer_cfgs[i], channels,
                                        self.arch['conv_channels'][i][j], **mixer_defaults)
                except (ValueError, TypeError) as err:
                    raise type(err)(f'PartialNet stage {i} block {j}: {err}') from None
                blocks.append(PartialNetBlock(
                    mixer, channels, mlp_ratio=self.arch['mlp_ratio'],
                    drop_path=dpr[block_idx + j], act_cfg=act_cfg, norm_cfg=norm_cfg,
                    use_spatial_attn=self.arch['use_spatial_attn'], with_cp=with_cp,
                    deploy=deploy))
            block_idx += depth
            self.stages.append(PartialNetStage(downsample, blocks))
        if with_out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        if deploy:
            self.requires_grad_(False)
            super().train(False)
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    parse_arch = staticmethod(parse_arch)

    def _resolve_mixer_cfgs(self, mixer_cfgs) -> Tuple[dict, ...]:
        """One mixer config per stage, defaults filled in."""
        defaults = [dict(type=DEFAULT_MIXER)] * (self.num_stages - 1) + \
            [dict(type=LAST_STAGE_MIXER)]
        if mixer_cfgs is None:
            return tuple(defaults)
        if isinstance(mixer_cfgs, dict):
            mixer_cfgs = [mixer_cfgs] * self.num_stages
        if len(mixer_cfgs) != self.num_stages:
            raise ValueError(f'PartialNet mixer_cfgs must be one config (every stage) or one '
                             f'per stage ({self.num_stages}, None for the default), got '
                             f'{len(mixer_cfgs)}')
        resolved = []
        for i, (cfg, default) in enumerate(zip(mixer_cfgs, defaults)):
            if cfg is not None and not (isinstance(cfg, dict) and 'type' in cfg):
                raise ValueError(f'PartialNet mixer_cfgs[{i}] must be None or a dict with a '
                                 f"'type', got {cfg!r}")
            resolved.append(copy.deepcopy(dict(cfg)) if cfg is not None else default)
        return tuple(resolved)

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned feature, in order (for the neck's ``in_channels``)."""
        return [self.embed_dims[i] for i in self.out_indices]

    @property
    def total_stride(self) -> int:
        return self.stem_stride * self.merge_stride**(self.num_stages - 1)

    @property
    def num_layers(self) -> int:
        """Layer-wise learning-rate decay depth: the stem, every block, then the rest."""
        return sum(self.depths) + 2

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """``(layer_id, num_layers)`` of a parameter, for layer-wise learning-rate decay.

        In the form mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` calls (through
        ``ImageClassifier.get_layer_depth``): the stem is 0, block ``k`` (counted over all
        stages from 1) is ``k``, a merging layer shares the depth of the first block after
        it and an output norm that of the last block before it; parameters outside the
        backbone (``param_name`` without ``prefix``: neck, heads) are ``num_layers - 1``.
        """
        last = self.num_layers - 1
        if not param_name.startswith(prefix):
            return last, self.num_layers
        name = param_name[len(prefix):]
        first_block = [1 + sum(self.depths[:i]) for i in range(self.num_stages)]
        parts = name.split('.')
        if parts[0] == 'stem':
            layer_id = 0
        elif parts[0] == 'stages':
            stage = int(parts[1])
            layer_id = first_block[stage] + (int(parts[3]) if parts[2] == 'blocks' else 0)
        elif parts[0].startswith('norm') and parts[0][4:].isdigit():
            stage = int(parts[0][4:])
            layer_id = first_block[stage] + self.depths[stage] - 1
        else:
            layer_id = last
        return layer_id, self.num_layers

    # ------------------------------------------------------------------ weights
    @classmethod
    def _resolve_init_cfg(cls, init_cfg):
        """``init_cfg`` as mmengine will apply it: None is :attr:`default_init_cfg`; entries
        of mmengine's type ``'Pretrained'`` become the checked loader (see ``init_cfg``)."""
        if init_cfg is None:
            return copy.deepcopy(cls.default_init_cfg)
        cfgs = [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg)
        if not all(isinstance(cfg, dict) and 'type' in cfg for cfg in cfgs):
            raise TypeError(f"PartialNet init_cfg must be None, a dict with a 'type' or a list "
                            f'of them, got {init_cfg!r}')
        loaders = [dict(cfg, type=cls.pretrained_init) for cfg in cfgs
                   if cfg['type'] == 'Pretrained']
        if not loaders:
            return init_cfg
        others = [cfg for cfg in cfgs if cfg['type'] != 'Pretrained']
        if isinstance(init_cfg, dict):
            others = copy.deepcopy(cls.default_init_cfg)
        resolved = others + loaders
        print_log(f"PartialNet loads init_cfg type 'Pretrained' with its checked loader: "
                  f"init_cfg={resolved}. Write type='{cls.pretrained_init}' to say so (alone, "
                  f'it loads over the weights the backbone was built with).', 'current',
                  logging.WARNING)
        return resolved

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
                'folded into the convolutions and it cannot be trained. Build it with '
                'deploy=False and load the trained (unfolded) checkpoint to train.')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ deploy
    def switch_to_deploy(self, memory_format: str = 'auto') -> 'PartialNet':
        """Convert to the folded inference form, in place; outputs stay the same.

        Every layer with an inference form folds itself
        (:func:`~partialnet_mm.models.utils.switch_to_deploy`): BatchNorms next to
        convolutions folded into them (stem, merging layers, MLP, PAT_ch's gate and
        post-gating norms, PAT_sp into the MLP's last convolution), the two parts of each
        partial convolution written into one tensor, PAT_sf's LayerNorm folded into ``qkv``
        and its iRPE bias gathered once per feature size. The output norms ``norm{i}`` stay.
        The result equals ``PartialNet(..., deploy=True)`` with the folded state dict.

        Inference only, and final: call it after loading the weights (the folded model has
        other state-dict keys), in either mode (mmdeploy calls it before ``model.eval()``);
        the backbone is left in eval mode and refuses ``train()`` afterwards. Calling it
        again only changes ``memory_format``.

        Args:
            memory_format (str): Layout the folded model computes in: ``'channels_last'``,
                ``'contiguous'`` (NCHW) or ``'auto'``: channels-last for CPU inputs (faster
                there), NCHW otherwise. The input is converted on entry; channels-last
                outputs have the same values. Defaults to ``'auto'``.

        Returns:
            PartialNet: ``self``.
        """
        if memory_format not in self.deploy_memory_formats:
            raise ValueError(f'memory_format must be one of {self.deploy_memory_formats}, '
                             f'got {memory_format!r}')
        if not self.deploy:
            switch_to_deploy(self)
            self.requires_grad_(False)
            self.deploy = True
            self.train(False)  # the output norms too: the folded backbone only infers
        self.deploy_memory_format = memory_format
        return self

    def _channels_last(self, x: torch.Tensor) -> bool:
        """Whether the network computes in the channels-last layout for input ``x``.

        On the CPU, where oneDNN's convolutions (forward and backward) and BatchNorms are
        faster in it, unless the authors' form is asked for (``naive``); the inference form
        follows ``deploy_memory_format``.
        """
        if self.deploy:
            return self.deploy_memory_format == 'channels_last' or (
                self.deploy_memory_format == 'auto' and x.device.type == 'cpu')
        return not self.naive and x.device.type == 'cpu'

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
        """The features of the ``out_indices`` stages, in the standard (NCHW) layout.

        The network may compute channels-last inside (:meth:`_channels_last`), but what it
        returns is contiguous NCHW: downstream operators read it as such (mmcv's CPU RoIAlign,
        for one, gives wrong values for a channels-last input).
        """
        self._check_input(x)
        channels_last = self._channels_last(x)
        x = self.stem(x, channels_last=channels_last)
        if not channels_last:
            x = x.contiguous()
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x) if self.with_out_norm else x
                # the gradient coming back through the NCHW copy is handed on channels-last,
                # the layout of what produced it (mixed layouts take slow backward kernels)
                outs.append(dense_channels_last_grad(out).contiguous())
        return tuple(outs)

