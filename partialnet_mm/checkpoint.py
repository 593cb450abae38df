"""Checkpoints: the authors' key names -> ours, arch inference, safe loading, pretrained init.

The authors' implementation (``haiduo/PartialNet``) names the layers of a 4-stage model as one
flat ``stages`` sequence (stage ``i`` at ``2i``, the merging layer before it at ``2i - 1``) and
uses positional names inside the MLP; ours name each layer for what it is. The mapping is
the table :data:`BLOCK_KEY_MAP` plus :func:`_map_key`.
"""
import pickle
import re
import warnings
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

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


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------- key mapping
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


def _strip_wrappers(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop a prefix that every key carries (PyTorch-Lightning ``model.``, DDP ``module.``)."""
    for prefix in ('model.', 'module.'):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    return state_dict


def unwrap_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: plain, ``state_dict``/``model`` wrapped."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        inner = checkpoint.get(key)
        if isinstance(inner, dict) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()):
            return _strip_wrappers(inner)
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f'no state dict found in the checkpoint (top-level keys: {sorted(checkpoint)[:10]})')
    others = sorted(k for k in checkpoint if k not in tensors)
    if others:
        raise CheckpointError(f'checkpoint mixes tensors with other entries {others[:10]}; '
                              f'cannot tell which is the state dict')
    return _strip_wrappers(OrderedDict(checkpoint))


# ---------------------------------------------------------------------------- arch inference
def arch_signature(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Structure read off a backbone state dict in *our* key names."""
    if OURS_MARKER not in state_dict:
        raise CheckpointError(f'not a PartialNet backbone state dict: no {OURS_MARKER!r}')
    depths: Dict[int, int] = {}
    for key in state_dict:
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.', key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    return dict(
        embed_dims=int(state_dict[OURS_MARKER].shape[0]),
        depths=tuple(depths[i] for i in sorted(depths)),
        use_spatial_attn=any('.mlp.spatial_attn.' in k for k in state_dict),
    )


def match_arch(signature: dict) -> Optional[str]:
    """Name of the preset with this structure, or None."""
    from .models.backbones.partialnet import PartialNet
    for name, setting in PartialNet.arch_settings.items():
        if (setting['embed_dims'] == signature['embed_dims']
                and tuple(setting['depths']) == signature['depths']
                and setting['use_spatial_attn'] == signature['use_spatial_attn']):
            return name
    return None


def describe_signature(signature: dict) -> str:
    return (f"embed_dims={signature['embed_dims']}, depths={signature['depths']}, "
            f"PAT_sp={'yes' if signature['use_spatial_attn'] else 'no'}")


# ---------------------------------------------------------------------------- shape checks
def expected_backbone_shapes(arch, with_out_norm: bool) -> Dict[str, torch.Size]:
    """Key -> shape of a freshly built backbone (on the meta device: no memory, fast)."""
    from .models.backbones.partialnet import PartialNet
    with torch.device('meta'):
        model = PartialNet(arch=arch, with_out_norm=with_out_norm)
    return {k: v.shape for k, v in model.state_dict().items()}


def check_shapes(state_dict: Dict[str, torch.Tensor], expected: Dict[str, torch.Size],
                 what: str, arch_hint: str = '') -> None:
    """Raise naming every mismatched, missing or unexpected key."""
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k])}'
                  for k, v in state_dict.items() if k in expected and v.shape != expected[k]]
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    problems = []
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatches: ' + '; '.join(mismatched[:8]))
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys: {unexpected[:8]}')
    if missing:
        problems.append(f'{len(missing)} missing keys: {missing[:8]}')
    if problems:
        raise CheckpointError(f'{what} does not fit {arch_hint}: ' + ' | '.join(problems))


# ---------------------------------------------------------------------------- conversion
def convert_state_dict(src: Dict[str, torch.Tensor], backbone_only: bool = False,
                       arch: Optional[str] = None) -> Tuple['OrderedDict', dict]:
    """Convert an authors' PartialNet state dict to our key names.

    Args:
        src: The authors' state dict (wrappers and ``model.``/``module.`` prefixes allowed).
        backbone_only: Return only backbone keys, without prefix (loadable with
            ``load_checkpoint(PartialNet(arch=...), ..., strict=True)``); the classifier head,
            if present, is dropped (and reported in the returned info). Otherwise keys are
            named as in mmpretrain's ``ImageClassifier`` (``backbone.*``, ``head.*``).
        arch: Assert that the weights are this preset.

    Returns:
        (state_dict, info) where info holds ``arch``, ``num_classes`` (or None),
        ``with_out_norm`` and ``dropped`` (keys deliberately left out).

    Raises:
        CheckpointError: unknown keys, a shape that does not fit the inferred arch, or an
        arch other than the asserted one.
    """
    src = unwrap_state_dict(src) if not all(
        isinstance(v, torch.Tensor) for v in src.values()) else _strip_wrappers(src)
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

    signature = arch_signature(backbone)
    inferred = match_arch(signature)
    if arch is not None:
        if arch not in _preset_names():
            raise CheckpointError(f'unknown arch {arch!r}; choose one of {_preset_names()}')
        if inferred != arch:
            raise CheckpointError(
                f"weights are not PartialNet-{arch}: they have {describe_signature(signature)}"
                + (f', i.e. PartialNet-{inferred}' if inferred else
                   ', which matches no preset'))
    if inferred is None:
        raise CheckpointError(
            f'weights match no PartialNet preset ({describe_signature(signature)}); '
            f'presets: {_preset_names()}')
    with_out_norm = any(re.match(r'norm\d+\.', k) for k in backbone)
    check_shapes(backbone, expected_backbone_shapes(inferred, with_out_norm),
                 'converted backbone', f'PartialNet-{inferred}')

    num_classes = None
    if head:
        num_classes = _check_head(head, signature, inferred)
    info = dict(arch=inferred, num_classes=num_classes, with_out_norm=with_out_norm,
                dropped=[])
    if backbone_only:
        info['dropped'] = [f'head.{k}' for k in head]
        return backbone, info
    out = OrderedDict((f'backbone.{k}', v) for k, v in backbone.items())
    out.update((f'head.{k}', v) for k, v in head.items())
    return out, info


def _check_head(head: Dict[str, torch.Tensor], signature: dict, arch: str) -> int:
    expected_keys = {'feat_proj.weight', 'fc.weight', 'fc.bias'}
    if set(head) != expected_keys:
        raise CheckpointError(f'classifier head keys {sorted(head)} are not the expected '
                              f'{sorted(expected_keys)}')
    num_classes, feat_channels = head['fc.weight'].shape
    in_channels = signature['embed_dims'] * 2**(len(signature['depths']) - 1)
    expected = {
        'feat_proj.weight': torch.Size((feat_channels, in_channels, 1, 1)),
        'fc.weight': torch.Size((num_classes, feat_channels)),
        'fc.bias': torch.Size((num_classes, )),
    }
    check_shapes(head, expected, 'classifier head', f'PartialNet-{arch}')
    return int(num_classes)


def _preset_names():
    from .models.backbones.partialnet import PartialNet
    return sorted(PartialNet.arch_settings)


# ---------------------------------------------------------------------------- loading files
class _InertObject:
    """Stands in for a pickled object whose class is not allow-listed; never runs its code.

    It only records what the pickle gives it: constructor arguments, state, and the items or
    elements pickle adds to dict and list subclasses.
    """

    def __new__(cls, *args, **kwargs):  # pickle's NEWOBJ calls __new__ without __init__
        obj = super().__new__(cls)
        obj.args, obj.items, obj.elements = args, {}, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.elements.append(value)

    def extend(self, values):
        self.elements.extend(values)


def _inert_pickle_module(allowed: dict, replaced: set):
    class InertUnpickler(pickle.Unpickler):

        def find_class(self, module, name):
            obj = allowed.get(f'{module}.{name}')
            if obj is not None:
                return obj
            replaced.add(f'{module}.{name}')
            return type(name, (_InertObject, ), {'__module__': f'inert.{module}'})

    class Module:
        Unpickler = InertUnpickler
        load = pickle.load
        __name__ = 'partialnet_inert_pickle'

    return Module


def load_checkpoint_file(path: str, map_location='cpu', allow_inert: bool = False):
    """Load a checkpoint file with ``weights_only=True``.

    Args:
        path: Local file.
        map_location: As for ``torch.load``.
        allow_inert: If weights-only loading meets a pickled object outside the allow-list
            (a PyTorch-Lightning checkpoint's hyper-parameters, say), load again with every
            such object replaced by an inert stand-in: its class is never imported and none
            of its code runs; a warning names what was replaced. Only tensors are used.

    Raises:
        CheckpointError: the file holds objects outside the allow-list and ``allow_inert``
        is False (the message names them).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_inert:
            raise CheckpointError(refusal_reason(path, err)) from None
    from torch._weights_only_unpickler import _get_allowed_globals
    replaced: set = set()
    module = _inert_pickle_module(_get_allowed_globals(), replaced)
    ckpt = torch.load(path, map_location=map_location, weights_only=False,
                      pickle_module=module)
    warnings.warn(f'{path}: replaced non-tensor objects by inert stand-ins (their code was '
                  f'not run): {sorted(replaced)}')
    return ckpt


def refusal_reason(path: str, err: Exception) -> str:
    """Why a weights-only load of ``path`` was refused, and what to do."""
    return (f'refusing to load {path}: it contains pickled Python objects outside the '
            f'weights-only allow-list, which could run arbitrary code when loaded '
            f'({_first_line(err)}). Nothing from it was executed. Load only checkpoints you '
            f"trust; re-save a trusted one's tensors with torch.save(ckpt['state_dict'], path).")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    unsupported = [t for t in text if 'Unsupported global' in t or 'GLOBAL' in t]
    return (unsupported or text or [type(err).__name__])[0].strip()


# ---------------------------------------------------------------------------- pretrained init
def load_pretrained_backbone(model, filename: str, prefix: Optional[str] = None,
                             map_location='cpu') -> None:
    """Load a converted (or authors') checkpoint into a :class:`PartialNet` backbone.

    Shapes must fit exactly, else :class:`CheckpointError` names the keys and the variant the
    checkpoint looks like. Keys the checkpoint lacks (e.g. the output norms when starting
    from a classifier) keep their initialisation and are reported in one warning.
    """
    from mmengine.logging import print_log
    from mmengine.runner.checkpoint import CheckpointLoader

    ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    state_dict = unwrap_state_dict(ckpt)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                               if k.startswith(prefix))
        if not selected:
            raise CheckpointError(f'{filename}: no key starts with prefix {prefix!r} '
                                  f'(first keys: {list(state_dict)[:5]})')
        state_dict = selected
    if AUTHORS_MARKER in state_dict:
        state_dict, _ = convert_state_dict(state_dict, backbone_only=True)
    if OURS_MARKER not in state_dict:
        hint = (" Set init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')."
                if f'backbone.{OURS_MARKER}' in state_dict else '')
        raise CheckpointError(f'{filename} holds no PartialNet backbone weights at the '
                              f'top level (first keys: {list(state_dict)[:5]}).{hint}')
    # a DPConv backbone starts from plain weights: same function, gates set to their split
    from .models.layers.dpconv import embed_plain_weights
    try:
        state_dict = embed_plain_weights(model, state_dict)
    except ValueError as err:
        raise CheckpointError(f'{filename} does not fit the DPConv backbone: {err}') from None
    own = model.state_dict()
    signature = arch_signature(state_dict)
    looks_like = match_arch(signature)
    hint = (f'PartialNet-{model.arch_name or "custom"}; the checkpoint looks like '
            + (f'PartialNet-{looks_like}' if looks_like else
               f'no preset ({describe_signature(signature)})'))
    if any(k.endswith('.conv.gates') for k in state_dict) and not any(
            k.endswith('.conv.gates') for k in own):
        hint += (' with DPConv gates (a DPConv training checkpoint): export it with '
                 'tools/export_dpconv.py and build the backbone with the arch it prints')
    mismatched = [k for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or unexpected:
        check_shapes({k: state_dict[k] for k in mismatched + unexpected},
                     {k: own[k].shape for k in mismatched}, filename, hint)
    missing = sorted(set(own) - set(state_dict))
    model.load_state_dict(state_dict, strict=False)
    print_log(f'PartialNet: loaded {len(state_dict)} tensors from {filename}', 'current')
    if missing:
        warnings.warn(f'PartialNet: {len(missing)} backbone tensors are not in {filename} and '
                      f'keep their initialisation: {missing[:8]}'
                      + (' ...' if len(missing) > 8 else ''))
