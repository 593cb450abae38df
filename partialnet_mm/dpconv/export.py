"""DPConv -> plain PartialNet: every DPConv mixer becomes the plain mixer it generalises,
with its learned convolved width; a checkpoint of a whole model is rewritten the same way."""
import copy
import inspect
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from ..checkpoint import CheckpointError
from ..checkpoint.model_files import (backbone_state, read_model_checkpoint,
                                      replace_backbone_state, training_config,
                                      write_model_checkpoint)
from ..models import MIXERS, PartialNet
from ..models.utils.compare import check_input, max_relative_difference
from ..version import __version__
from .losses import dpconv_layers

RTOL = 1e-5  # exported vs DPConv outputs: max |diff| <= RTOL * max |DPConv output|


def plain_mixer_cfg(cfg: dict) -> dict:
    """The plain mixer config a DPConv mixer config exports to (others stay as they are):
    ``dict(type=cfg['mixer'])`` with the settings of ``cfg`` that mixer takes."""
    if cfg.get('type') != 'DPConv':
        return copy.deepcopy(cfg)
    plain_type = cfg.get('mixer', 'PATChannel')
    params = inspect.signature(MIXERS.get(plain_type)).parameters
    return dict(type=plain_type, **{k: copy.deepcopy(v) for k, v in cfg.items()
                                    if k in params and k not in ('channels', 'conv_channels')})


def export_dpconv(backbone: PartialNet) -> Tuple['OrderedDict', dict]:
    """A DPConv PartialNet's state dict and arguments rewritten as a plain PartialNet's.

    Returns:
        (state_dict, changes): the backbone state dict (same key names, DPConv layers sliced
        to their learned split, no gates) and the constructor arguments that change:
        ``arch`` (with ``conv_channels``, one width per block) and ``mixer_cfgs``.
    """
    state = backbone.state_dict()
    for name, layer in dpconv_layers(backbone):
        stage, block = name[1:].split('.b')
        prefix = f'stages.{stage}.blocks.{block}.spatial_mixing.'
        for key in [k for k in state if k.startswith(prefix)]:
            del state[key]
        state.update((prefix + k, v) for k, v in layer.export_state_dict().items())
    conv_channels = tuple(
        tuple(int(block.spatial_mixing.conv_channels) for block in stage.blocks)
        for stage in backbone.stages)
    arch = dict(embed_dims=backbone.arch['embed_dims'], depths=backbone.arch['depths'])
    arch.update((k, v) for k, v in backbone.arch.items() if k not in arch)
    arch['conv_channels'] = conv_channels
    mixer_cfgs = [plain_mixer_cfg(cfg) for cfg in backbone.mixer_cfgs]
    return state, dict(arch=arch, mixer_cfgs=mixer_cfgs)


def build_backbone(kwargs: dict, **overrides) -> PartialNet:
    """A backbone from its config (``type`` and ``init_cfg`` ignored), in eval mode."""
    kwargs = {k: copy.deepcopy(v) for k, v in kwargs.items() if k not in ('type', 'init_cfg')}
    kwargs.update(overrides)
    return PartialNet(**kwargs, init_cfg=None).eval()


def config_snippet(changes: dict) -> str:
    """The config lines that turn the training config into the exported model's."""
    items = ''.join(f'            {k}={_as_dict_call(v)},\n' for k, v in changes['arch'].items())
    mixers = ', '.join(_as_dict_call(c) for c in changes['mixer_cfgs'])
    return ('model = dict(\n    backbone=dict(\n'
            f'        mixer_cfgs=[{mixers}],\n'
            f'        arch=dict(\n            _delete_=True,\n{items}        )))')


def _as_dict_call(value) -> str:
    """A config-style ``dict(key=value, ...)`` expression of a (nested) dict."""
    if isinstance(value, dict):
        return 'dict(' + ', '.join(f'{k}={_as_dict_call(v)}' for k, v in value.items()) + ')'
    return repr(value)


def export_checkpoint(src: str, dst: str, config: Optional[str] = None,
                      out_config: Optional[str] = None,
                      prefix: Optional[str] = None) -> Dict:
    """Export a trained DPConv checkpoint to a plain PartialNet checkpoint.

    ``src`` is an mmengine checkpoint of a whole model (detector, segmentor or classifier,
    backbone under ``backbone.``) or of a bare backbone. The backbone's config is read from
    ``config`` (the training config) or the copy mmengine stores in the checkpoint. The
    exported backbone is run next to the DPConv backbone (eval mode) on a random input; they
    must agree within :data:`RTOL` x max|output|, else nothing is written. The rest of the
    model is copied as it is. With ``out_config``, a config inheriting ``config`` with the
    change applied (and ``DPConvHook`` removed) is written.

    Returns:
        dict: ``arch``, ``conv_channels``, ``mixer_cfgs``, ``splits`` (layer -> (c, D)),
        ``unordered`` (layers whose gates were out of legal order), ``config_snippet``,
        ``max_rel_diff`` (also stored in ``dst``'s ``meta['dpconv_export']``).
    """
    state, meta, prefix = read_model_checkpoint(src, prefix)
    dp_state = backbone_state(state, prefix)
    if not any(k.endswith('.conv.gates') for k in dp_state):
        raise CheckpointError('the backbone has no DPConv gates (*.conv.gates): it is already '
                              'a plain PartialNet, nothing to export')
    cfg = training_config(meta, config)
    kwargs = dict(cfg.model.backbone) if prefix else dict(cfg.model)
    model = build_backbone(kwargs)
    if not dpconv_layers(model):
        raise CheckpointError('the config builds no DPConv mixer, but the checkpoint has '
                              'DPConv gates: pass the config it was trained with (--config)')
    try:
        model.load_state_dict(dp_state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f'the checkpoint does not fit the config\'s backbone: '
                              f'{err}') from None
    plain_state, changes = export_dpconv(model)
    plain = build_backbone(kwargs, **changes)
    plain.load_state_dict(plain_state, strict=True)
    rel_diff = max_relative_difference(model, plain, check_input(model))
    if not rel_diff <= RTOL:
        raise CheckpointError(f'the exported backbone differs from the DPConv backbone by '
                              f'{rel_diff:.3g} x max|output| (> {RTOL}); nothing written')

    layers = dpconv_layers(model)
    splits = OrderedDict((name, (layer.conv_channels, layer.channels)) for name, layer in layers)
    # gates not in legal order (an 'on' gate before an 'off' one): the block's mask is
    # sparser than dense; exported exactly all the same
    unordered = [name for name, layer in layers
                 if layer.conv.states().tolist() != sorted(layer.conv.states().tolist())]
    snippet = config_snippet(changes)
    info = dict(source=osp.abspath(src), arch=changes['arch'],
                conv_channels=changes['arch']['conv_channels'],
                mixer_cfgs=changes['mixer_cfgs'], splits=splits, unordered=unordered,
                config_change=dict(model=dict(backbone=changes), remove_hooks=['DPConvHook']),
                config_snippet=snippet, max_rel_diff=rel_diff,
                partialnet_mm_version=__version__)
    write_model_checkpoint(dst, replace_backbone_state(state, prefix, plain_state), meta,
                           dpconv_export=info)
    if out_config:
        if not config:
            raise CheckpointError('--out-config inherits the training config: pass it with '
                                  '--config')
        write_exported_config(out_config, config, src, dst, snippet, cfg.get('custom_hooks', []))
    return info


def write_exported_config(path: str, config: str, src: str, dst: str, snippet: str,
                          hooks: List[dict]) -> None:
    """A config inheriting ``config`` with the export's change and without ``DPConvHook``."""
    base = osp.relpath(osp.abspath(config), osp.dirname(osp.abspath(path)))
    hooks = [h for h in hooks if h.get('type') != 'DPConvHook']
    with open(path, 'w') as f:
        f.write(f'# {osp.basename(config)} with the splits DPConv learned in '
                f'{osp.basename(src)}, as a plain PartialNet\n'
                f'# (written by tools/export_dpconv.py; weights: {dst})\n'
                f'_base_ = [{base!r}]\n\n{snippet}\n'
                f'custom_hooks = {hooks!r}\n')


def learned_splits_table(info: Dict) -> List[str]:
    """One printable line per DPConv layer of an :func:`export_checkpoint` result."""
    lines = []
    for name, (c, d) in info['splits'].items():
        note = ('  gates out of order: grouped (sparser) 3x3 weight'
                if name in info['unordered'] else '')
        lines.append(f'  stage {name[1]} block {name.split(".b")[1]}: {c:4d} / {d:<4d} '
                     f'(1/{d // c}){note}')
    return lines
