"""The authors' key names -> ours: a pure function of a state dict and the arch table.

The authors' implementation (``haiduo/PartialNet``) names the layers of a 4-stage model as one
flat ``stages`` sequence (stage ``i`` at ``2i``, the merging layer before it at ``2i - 1``) and
uses positional names inside the MLP; ours name each layer for what it is. The mapping is
the table :data:`BLOCK_KEY_MAP` plus :func:`_map_key`. Shapes are checked against a built
model by :func:`.pretrained.convert_state_dict`, which wraps this converter.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from .loading import CheckpointError, describe_mismatch, strip_wrappers, unwrap_state_dict

# Inside a block: authors' suffix -> ours. Order matters (first match wins).
BLOCK_KEY_MAP = (
    ('spatial_mixing.partial_conv3.', 'spatial_mixing.conv.'),
    ('spatial_mixing.attn.cfc1.', 'spatial_mixing.attn.gate_conv.'),
    ('spatial_mixing.attn.bn.', 'spatial_mixing.attn.gate_norm.'),
    ('spatial_mixing.attn.rpe_k.lookup_table_bias', 'spatial_mixing.attn.rpe.bias_table'),
    ('spatial_mixing.attn.qkv.', 'spatial_mixing.attn.qkv.'),
    ('spatial_mixing.attn.proj.', 'spatial_mixing.attn.proj.'),
    # the BN after gating (PAT_ch) or the LayerNorm before attention (PAT_sf)
    ('spatial_mixing.norm.', 'spatial_mixing.attn.norm.'),
    ('mlp.0.', 'mlp.fc1.'),
    ('mlp.1.', 'mlp.norm.'),
    ('mlp.3.', 'mlp.fc2.'),
    ('mlp.4.conv_attn.', 'mlp.spatial_attn.gate_conv.'),
    ('mlp.4.norm2.', 'mlp.spatial_attn.proj_norm.'),
    ('mlp.4.norm.', 'mlp.spatial_attn.gate_norm.'),
    ('mlp.4.conv.', 'mlp.spatial_attn.proj.'),
)
HEAD_KEY_MAP = (
    ('avgpool_pre_head.1.', 'feat_proj.'),
    ('head.', 'fc.'),
)
AUTHORS_MARKER = 'patch_embed.proj.weight'
OURS_MARKER = 'stem.conv.weight'


def _map_key(key: str) -> Optional[Tuple[str, str]]:
    """Map one authors' key to ``(part, our_key)``; part is 'backbone' or 'head'.

    Returns None for a key that is not part of the authors' model.
    """
    m = re.fullmatch(r'patch_embed\.(proj|norm)\.(.+)', key)
    if m:
        return 'backbone', f"stem.{'conv' if m.group(1) == 'proj' else 'norm'}.{m.group(2)}"
    m = re.fullmatch(r'stages\.(\d+)\.(reduction|norm)\.(.+)', key)
    if m and int(m.group(1)) % 2 == 1:
        stage = (int(m.group(1)) + 1) // 2
        layer = 'conv' if m.group(2) == 'reduction' else 'norm'
        return 'backbone', f'stages.{stage}.downsample.{layer}.{m.group(3)}'
    m = re.fullmatch(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)', key)
    if m and int(m.group(1)) % 2 == 0:
        for old, new in BLOCK_KEY_MAP:
            if m.group(3).startswith(old):
                rest = m.group(3)[len(old):]
                return 'backbone', (f'stages.{int(m.group(1)) // 2}.blocks.{m.group(2)}.'
                                    f'{new}{rest}')
        return None
    m = re.fullmatch(r'norm(\d+)\.(.+)', key)
    if m and int(m.group(1)) % 2 == 0:
        return 'backbone', f'norm{int(m.group(1)) // 2}.{m.group(2)}'
    for old, new in HEAD_KEY_MAP:
        if key.startswith(old):
            return 'head', new + key[len(old):]
    return None


def backbone_structure(state_dict: Dict[str, torch.Tensor]) -> dict:
    """``embed_dims``, ``depths`` and ``use_spatial_attn`` read off a backbone state dict in
    our key names."""
    if OURS_MARKER not in state_dict:
        raise CheckpointError(f'not a PartialNet backbone state dict: no {OURS_MARKER!r}')
    depths: Dict[int, int] = {}
    for key in state_dict:
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.', key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    return dict(embed_dims=int(state_dict[OURS_MARKER].shape[0]),
                depths=tuple(depths[i] for i in sorted(depths)),
                use_spatial_attn=any('.mlp.spatial_attn.' in k for k in state_dict))


def preset_of(structure: dict, arch_settings: dict) -> Optional[str]:
    """Name of the preset with this :func:`backbone_structure`, or None."""
    for name, setting in arch_settings.items():
        if (setting['embed_dims'], tuple(setting['depths']), setting['use_spatial_attn']) == \
                (structure['embed_dims'], structure['depths'], structure['use_spatial_attn']):
            return name
    return None


def describe_structure(structure: dict) -> str:
    return (f"embed_dims={structure['embed_dims']}, depths={structure['depths']}, "
            f"PAT_sp={'yes' if structure['use_spatial_attn'] else 'no'}")


def convert_authors_state_dict(src: Dict[str, torch.Tensor], arch_settings: dict,
                               backbone_only: bool = False,
                               arch: Optional[str] = None) -> Tuple['OrderedDict', dict]:
    """Rename an authors' PartialNet state dict to our key names and infer its preset.

    Args:
        src: The authors' state dict (wrappers and ``model.``/``module.`` prefixes allowed).
        arch_settings: The preset table (``partialnet_mm.models.archs.ARCH_SETTINGS``).
        backbone_only: Return only backbone keys, without prefix; the classifier head, if
            present, is dropped (and reported in the returned info). Otherwise keys are
            named as in mmpretrain's ``ImageClassifier`` (``backbone.*``, ``head.*``).
        arch: Assert that the weights are this preset.

    Returns:
        (state_dict, info) where info holds ``arch``, ``num_classes`` (or None),
        ``with_out_norm`` and ``dropped`` (keys deliberately left out).

    Raises:
        CheckpointError: unknown keys, a structure that matches no preset, a head that does
        not fit the backbone, or an arch other than the asserted one.
    """
    src = unwrap_state_dict(src) if not all(
        isinstance(v, torch.Tensor) for v in src.values()) else strip_wrappers(src)
    if AUTHORS_MARKER not in src:
        hint = (' It already uses our key names.' if OURS_MARKER in src or
                f'backbone.{OURS_MARKER}' in src else '')
        raise CheckpointError(
            f"not an authors' PartialNet checkpoint: no {AUTHORS_MARKER!r} key.{hint}")
    backbone, head, unknown = OrderedDict(), OrderedDict(), []
    for key, value in src.items():
        mapped = _map_key(key)
        if mapped is None:
            unknown.append(key)
            continue
        part, new_key = mapped
        (backbone if part == 'backbone' else head)[new_key] = value
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} keys are not part of an authors' PartialNet and would be lost: "
            f'{unknown[:10]}. Remove them (or convert the model they belong to separately).')

    structure = backbone_structure(backbone)
    inferred = preset_of(structure, arch_settings)
    presets = sorted(arch_settings)
    if arch is not None:
        if arch not in arch_settings:
            raise CheckpointError(f'unknown arch {arch!r}; choose one of {presets}')
        if inferred != arch:
            raise CheckpointError(
                f'weights are not PartialNet-{arch}: they have {describe_structure(structure)}'
                + (f', i.e. PartialNet-{inferred}' if inferred else
                   ', which matches no preset'))
    if inferred is None:
        raise CheckpointError(f'weights match no PartialNet preset '
                              f'({describe_structure(structure)}); presets: {presets}')
    with_out_norm = any(re.match(r'norm\d+\.', k) for k in backbone)
    num_classes = _check_head(head, structure, inferred) if head else None
    info = dict(arch=inferred, num_classes=num_classes, with_out_norm=with_out_norm,
                dropped=[])
    if backbone_only:
        info['dropped'] = [f'head.{k}' for k in head]
        return backbone, info
    out = OrderedDict((f'backbone.{k}', v) for k, v in backbone.items())
    out.update((f'head.{k}', v) for k, v in head.items())
    return out, info


def _check_head(head: Dict[str, torch.Tensor], structure: dict, arch: str) -> int:
    expected_keys = {'feat_proj.weight', 'fc.weight', 'fc.bias'}
    if set(head) != expected_keys:
        raise CheckpointError(f'classifier head keys {sorted(head)} are not the expected '
                              f'{sorted(expected_keys)}')
    num_classes, feat_channels = head['fc.weight'].shape
    in_channels = structure['embed_dims'] * 2**(len(structure['depths']) - 1)
    expected = {
        'feat_proj.weight': torch.Size((feat_channels, in_channels, 1, 1)),
        'fc.weight': torch.Size((num_classes, feat_channels)),
        'fc.bias': torch.Size((num_classes, )),
    }
    if any(head[k].shape != shape for k, shape in expected.items()):
        raise CheckpointError(describe_mismatch(head, expected, 'classifier head',
                                                f'PartialNet-{arch}'))
    return int(num_classes)
