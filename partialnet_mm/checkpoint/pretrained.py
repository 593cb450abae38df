"""Pretrained weights into a PartialNet backbone: found, converted, checked, then loaded.

``PartialNet(init_cfg=dict(type='PartialNetPretrained', checkpoint=..., prefix=...))`` names
:class:`PartialNetPretrained`, the checked counterpart of mmengine's ``Pretrained`` (which the
backbone reads as this loader): a missing file stops with the fix instead of training from
scratch unnoticed, an authors' checkpoint is converted on the fly, a checkpoint of another
variant is named as such, and the spatial mixers say what their keys mean
(:class:`~partialnet_mm.models.SpatialMixer`). :func:`convert_state_dict` converts an
authors' state dict checked against the backbone.
"""
import os.path as osp
import warnings
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import CheckpointLoader

from ..models import ARCH_SETTINGS, PartialNet, SpatialMixer
from .authors import (AUTHORS_MARKER, OURS_MARKER, backbone_structure,
                      convert_authors_state_dict, describe_structure, preset_of)
from .loading import CheckpointError, describe_mismatch, unwrap_state_dict

PRETRAINED_HELP = (
    "Convert the authors' ImageNet weights to that path with `python "
    "tools/convert_checkpoint.py <authors' .pth> {path}`, point init_cfg.checkpoint at "
    "another file, or train the backbone from scratch on purpose with `--cfg-options "
    "model.backbone.init_cfg=None`.")


@WEIGHT_INITIALIZERS.register_module(name=PartialNet.pretrained_init)
class PartialNetPretrained:
    """The initialiser ``init_cfg=dict(type='PartialNetPretrained', checkpoint=...,
    prefix=None, map_location='cpu')`` of a PartialNet backbone: :func:`load_pretrained`.

    It only loads: keys the checkpoint lacks keep what they held before (what the backbone
    was built with, or what initialisers listed before it in ``init_cfg`` wrote).
    """

    def __init__(self, checkpoint: Optional[str] = None, prefix: Optional[str] = None,
                 map_location='cpu'):
        if checkpoint is None:
            raise ValueError(f"init_cfg type '{PartialNet.pretrained_init}' needs a "
                             f"'checkpoint' (a converted .pth: tools/convert_checkpoint.py)")
        self.checkpoint, self.prefix, self.map_location = checkpoint, prefix, map_location

    def __call__(self, backbone: nn.Module) -> None:
        if not isinstance(backbone, PartialNet):
            raise TypeError(
                f"init_cfg type '{PartialNet.pretrained_init}' loads a PartialNet backbone, "
                f'not a {type(backbone).__name__}: put it in model.backbone.init_cfg (with '
                f"prefix='backbone.' for a whole classifier's checkpoint), or use mmengine's "
                f"'Pretrained' for other modules.")
        load_pretrained(backbone, self.checkpoint, self.prefix, self.map_location)
        if hasattr(backbone, '_params_init_info'):
            update_init_info(backbone, init_info=f'{PartialNet.pretrained_init}: loaded from '
                             f'{self.checkpoint}')


def load_pretrained(backbone: PartialNet, filename: str, prefix: Optional[str] = None,
                    map_location='cpu') -> None:
    """Load a converted (or authors') checkpoint into ``backbone``.

    Shapes must fit exactly, else :class:`CheckpointError` names the keys and the variant the
    checkpoint looks like. Keys the checkpoint lacks (e.g. the output norms when starting
    from a classifier) keep their initialisation and are reported in one warning. A missing
    local file is an error that names the fix: training from scratch must be asked for
    (``init_cfg=None``). A damaged or foreign file is named by the loader
    (:func:`~partialnet_mm.checkpoint.load_checkpoint_file`, mmengine's local loader).
    """
    name = f'PartialNet-{backbone.arch_name or "custom"}'
    if '://' not in filename and not osp.isfile(filename):
        raise CheckpointError(
            f'{name}: pretrained checkpoint {filename!r} not found (init_cfg=dict(type='
            f'{PartialNet.pretrained_init!r}, ...)); the run stops rather than train from '
            f'scratch unnoticed. '
            + PRETRAINED_HELP.format(path=filename))
    ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    state_dict = unwrap_state_dict(ckpt)
    if prefix and AUTHORS_MARKER not in state_dict:  # the authors' files have no prefix
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                               if k.startswith(prefix))
        if not selected:
            raise CheckpointError(f'{filename}: no key starts with prefix {prefix!r} '
                                  f'(first keys: {list(state_dict)[:5]})')
        state_dict = selected
    if AUTHORS_MARKER in state_dict:
        state_dict, _ = convert_authors_state_dict(state_dict, ARCH_SETTINGS,
                                                   backbone_only=True)
    if OURS_MARKER not in state_dict:
        hint = (f" Set init_cfg=dict(type='{PartialNet.pretrained_init}', checkpoint=..., "
                "prefix='backbone.')."
                if f'backbone.{OURS_MARKER}' in state_dict else '')
        raise CheckpointError(f'{filename} holds no PartialNet backbone weights at the '
                              f'top level (first keys: {list(state_dict)[:5]}).{hint}')
    target = f'{name}; the checkpoint looks like {describe_checkpoint_arch(state_dict)}'
    check_keys(backbone, state_dict, filename, target)
    try:
        missing = sorted(backbone.load_state_dict(state_dict, strict=False).missing_keys)
    except (ValueError, RuntimeError) as err:
        raise CheckpointError(f'{filename} does not load into {target}: {err}') from None
    print_log(f'PartialNet: loaded {len(state_dict)} tensors from {filename}', 'current')
    if missing:
        warnings.warn(f'PartialNet: {len(missing)} backbone tensors are not in {filename} '
                      f'and keep their initialisation: {missing[:8]}'
                      + (' ...' if len(missing) > 8 else ''))


def check_keys(backbone: nn.Module, state_dict: Dict[str, torch.Tensor], filename: str,
               target: str) -> None:
    """Refuse shape mismatches and unexpected keys (missing ones are only warned about).

    A mixer that adapts other shapes (:attr:`SpatialMixer.adapts_state_dict`, e.g. one that
    embeds plain weights into a learned split) gets the keys under it in its own
    ``_load_from_state_dict``; an unexpected key under a mixer adds what the mixer says of it
    (:meth:`SpatialMixer.unexpected_key_hint`) to the error.
    """
    own = backbone.state_dict()
    mixers = {f'{name}.': m for name, m in backbone.named_modules()
              if isinstance(m, SpatialMixer)}
    adapts = tuple(prefix for prefix, m in mixers.items() if m.adapts_state_dict)
    mismatched = [k for k, v in state_dict.items()
                  if k in own and v.shape != own[k].shape and not k.startswith(adapts)]
    unexpected = [k for k in state_dict if k not in own and not k.startswith(adapts)]
    if mismatched or unexpected:
        hints = sorted({m.unexpected_key_hint(k[len(prefix):]) for k in unexpected
                        for prefix, m in mixers.items() if k.startswith(prefix)} - {None})
        raise CheckpointError(describe_mismatch(
            {k: state_dict[k] for k in mismatched + unexpected},
            {k: own[k].shape for k in mismatched}, filename, target)
            + ''.join(f'. {h}' for h in hints))


def describe_checkpoint_arch(state_dict: Dict[str, torch.Tensor]) -> str:
    """``'PartialNet-t1'`` or a structural description of a backbone state dict."""
    structure = backbone_structure(state_dict)
    name = preset_of(structure, ARCH_SETTINGS)
    return f'PartialNet-{name}' if name else f'no preset ({describe_structure(structure)})'


def convert_state_dict(src: Dict[str, torch.Tensor], backbone_only: bool = False,
                       arch: Optional[str] = None) -> Tuple['OrderedDict', dict]:
    """An authors' PartialNet state dict in our key names, checked against the model.

    :func:`~partialnet_mm.checkpoint.convert_authors_state_dict` (renaming and arch
    inference) followed by a shape check of every backbone tensor against the backbone the
    inferred arch builds, so that a bad tensor is named here and not at loading time.

    Args:
        src: The authors' state dict (wrappers and ``model.``/``module.`` prefixes allowed).
        backbone_only: Backbone keys only, without prefix (loadable into
            ``PartialNet(arch=...)``); otherwise keys as mmpretrain's ``ImageClassifier``
            names them (``backbone.*``, ``head.*``).
        arch: Assert that the weights are this preset.

    Returns:
        (state_dict, info): info holds ``arch``, ``num_classes`` (or None),
        ``with_out_norm`` and ``dropped`` (keys deliberately left out).
    """
    state_dict, info = convert_authors_state_dict(src, ARCH_SETTINGS, backbone_only, arch)
    with torch.device('meta'):
        reference = PartialNet(arch=info['arch'], with_out_norm=info['with_out_norm'])
    expected = {k: v.shape for k, v in reference.state_dict().items()}
    prefix = '' if backbone_only else 'backbone.'
    backbone = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    mismatched = [k for k, v in backbone.items() if k in expected and v.shape != expected[k]]
    unknown = sorted(set(backbone) - set(expected))
    missing = sorted(set(expected) - set(backbone))
    if mismatched or unknown or missing:
        raise CheckpointError(describe_mismatch(
            {k: backbone[k] for k in mismatched + unknown}, expected,
            'converted backbone', f'PartialNet-{info["arch"]}', missing=missing))
    return state_dict, info
