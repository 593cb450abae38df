"""The PartialNet variants: the one table of presets, and how an ``arch`` argument resolves.

Everything else (stage widths, convolved widths, the neck's ``in_channels``, the checkpoint
converter's arch inference) is derived from :data:`ARCH_SETTINGS` and :func:`parse_arch`.
The presets are the authors' ImageNet-1K configurations (see ``docs/architecture.md``).
"""
import copy
from typing import List, Sequence, Union

from mmcv.cnn import build_activation_layer

# The authors' two activations (their ``act_layer`` 'GELU' and 'RELU'), as mmcv configs.
GELU = dict(type='GELU')
RELU = dict(type='ReLU', inplace=True)

# Hyper-parameters shared by every preset; an arch dict may override any of them.
ARCH_DEFAULTS = dict(
    n_div=4,  # the convolved part of each partial conv is C_i / n_div channels
    mlp_ratio=2.,
    num_heads=4,  # heads of the last stage's self-attention (PAT_sf)
    act_cfg=RELU,  # the authors' default act_layer
    drop_path_rate=0.,
    use_spatial_attn=False,  # PAT_sp at the end of every MLP
    # convolved channels per stage: None (channels // n_div), an int (every block of the
    # stage) or one int per block (a learned split, e.g. exported from DPConv)
    conv_channels=None,
)
ARCH_REQUIRED_KEYS = ('embed_dims', 'depths')

# The authors' ImageNet-1K presets (their cfg/PartialNet_<arch>.yaml). ``embed_dims`` is C:
# the stage widths C, 2C, 4C, 8C are derived from it (parse_arch); ``drop_path_rate`` is the
# stochastic depth of the last block, the earlier blocks' rising linearly from 0.
ARCH_SETTINGS = {
    't0': dict(embed_dims=32, depths=(1, 2, 8, 2), act_cfg=GELU, drop_path_rate=0.,
               use_spatial_attn=False),
    't1': dict(embed_dims=48, depths=(1, 2, 8, 2), act_cfg=GELU, drop_path_rate=0.02,
               use_spatial_attn=True),
    't2': dict(embed_dims=64, depths=(2, 2, 6, 4), act_cfg=RELU, drop_path_rate=0.05,
               use_spatial_attn=False),
    's': dict(embed_dims=96, depths=(2, 2, 9, 4), act_cfg=RELU, drop_path_rate=0.1,
              use_spatial_attn=False),
    'm': dict(embed_dims=128, depths=(2, 3, 16, 4), act_cfg=RELU, drop_path_rate=0.2,
              use_spatial_attn=False),
    'l': dict(embed_dims=160, depths=(2, 3, 20, 4), act_cfg=RELU, drop_path_rate=0.3,
              use_spatial_attn=False),
}


def check_act_cfg(act_cfg, where: str = 'PartialNet act_cfg') -> dict:
    """``act_cfg`` if it builds an activation layer, else a ValueError naming the choices.

    The authors' code knows two activations, :data:`GELU` and :data:`RELU`; any other
    activation in mmengine's ``MODELS`` registry (mmcv's SiLU, HSwish, ...) builds as well,
    though no published checkpoint was trained with it.
    """
    choices = (f"the authors' activations are dict(type='GELU') and dict(type='ReLU', "
               f"inplace=True) (their act_layer 'GELU' and 'RELU'); other activations "
               f"registered in mmengine's MODELS (e.g. mmcv's 'SiLU', 'HSwish') also build")
    if not isinstance(act_cfg, dict) or 'type' not in act_cfg:
        raise ValueError(f'{where} must be a dict with a \'type\', got '
                         f'{act_cfg!r}: {choices}.')
    try:
        build_activation_layer(copy.deepcopy(act_cfg))
    except KeyError:
        raise ValueError(f'{where} {act_cfg!r} does not build an activation (no registered '
                         f'type {act_cfg["type"]!r}): {choices}.') from None
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where} {act_cfg!r} does not build an activation '
                         f'({type(err).__name__}: {err}): {choices}.') from None
    return act_cfg


def partial_channels(channels: int, n_div: int) -> int:
    """Width of the convolved part of a ``channels``-wide partial convolution."""
    if n_div < 1 or channels % n_div:
        raise ValueError(
            f'PartialNet: {channels} channels cannot be split into n_div={n_div} parts; '
            f'choose embed_dims (and their stage multiples) divisible by n_div.')
    return channels // n_div


def parse_arch(arch: Union[str, dict]) -> dict:
    """Resolve ``arch`` (a preset name or a dict) to a full settings dict.

    The result has one width per stage in ``embed_dims`` and one tuple of per-block
    convolved widths per stage in ``conv_channels``.
    """
    if isinstance(arch, str):
        if arch.lower() not in ARCH_SETTINGS:
            raise ValueError(
                f'Unknown PartialNet arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)} '
                f'or pass a dict with keys {list(ARCH_REQUIRED_KEYS)} (optional: '
                f'{sorted(ARCH_DEFAULTS)}).')
        settings = dict(ARCH_DEFAULTS, **copy.deepcopy(ARCH_SETTINGS[arch.lower()]))
    elif isinstance(arch, dict):
        missing = [k for k in ARCH_REQUIRED_KEYS if k not in arch]
        if missing:
            raise ValueError(
                f'PartialNet arch dict is missing {missing}; it needs '
                f'{list(ARCH_REQUIRED_KEYS)} (optional, with defaults: {ARCH_DEFAULTS}). '
                f'Got keys {sorted(arch)}. Or name a preset: {sorted(ARCH_SETTINGS)}.')
        unknown = sorted(set(arch) - set(ARCH_REQUIRED_KEYS) - set(ARCH_DEFAULTS))
        if unknown:
            raise ValueError(f'PartialNet arch dict has unknown keys {unknown}; allowed: '
                             f'{list(ARCH_REQUIRED_KEYS) + sorted(ARCH_DEFAULTS)}. Or name '
                             f'a preset: {sorted(ARCH_SETTINGS)}.')
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
    check_act_cfg(settings['act_cfg'], "PartialNet arch's act_cfg")
    settings['conv_channels'] = _resolve_conv_channels(settings)
    return settings


def _resolve_conv_channels(settings: dict) -> tuple:
    """``settings['conv_channels']`` as one tuple of per-block widths per stage."""
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


def check_out_indices(out_indices: Union[int, Sequence[int]], num_stages: int) -> tuple:
    """``out_indices`` as a sorted tuple of stage indices (negative ones counted from the end)."""
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


def partialnet_channels(arch: Union[str, dict],
                        out_indices: Sequence[int] = (0, 1, 2, 3)) -> List[int]:
    """Channels of the features a ``PartialNet(arch, out_indices)`` returns.

    For configs: ``neck=dict(in_channels=partialnet_channels(arch))``.
    """
    dims = parse_arch(arch)['embed_dims']
    return [dims[i] for i in check_out_indices(out_indices, len(dims))]
