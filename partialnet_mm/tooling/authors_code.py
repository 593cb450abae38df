"""The authors' own implementation (a user's clone of haiduo/PartialNet) as a benchmark peer.

Nothing of it is shipped: :func:`load_authors_partialnet` imports ``<clone>/models/
partialnet.py`` (and the two files it imports, ``dgconv.py`` and ``irpe.py``) as a private
package, without running the clone's ``models/__init__.py`` (which registers unrelated
models in timm). :func:`authors_model` builds the authors' classifier or dense-prediction
backbone of an arch with the arguments of their ``cfg/PartialNet_<arch>.yaml`` and loads our
model's weights into it (our key names mapped back to theirs by the checkpoint converter's
table), so both sides compute with the same weights; :func:`max_output_difference` checks it.
"""
import importlib
import os.path as osp
import sys
import types
from typing import Dict, Tuple

import torch
import torch.nn as nn

from ..checkpoint.authors import _map_key
from ..models import parse_arch

PACKAGE = '_partialnet_authors_models'
REPOSITORY = 'https://github.com/haiduo/PartialNet'


class AuthorsCodeError(ValueError):
    pass


def _easydict_stand_in() -> types.ModuleType:
    """``easydict.EasyDict`` (a dict with attribute access), which the authors' ``irpe.py``
    imports for its configuration objects; used only when easydict is not installed."""
    module = types.ModuleType('easydict')

    class EasyDict(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

        def __setattr__(self, name, value):
            self[name] = value

    module.EasyDict = EasyDict
    return module


def load_authors_partialnet(path: str) -> types.ModuleType:
    """The module ``<path>/models/partialnet.py`` of a clone of the authors' repository."""
    models_dir = osp.join(osp.abspath(path), 'models')
    needed = [osp.join(models_dir, f) for f in ('partialnet.py', 'irpe.py', 'dgconv.py')]
    missing = [f for f in needed if not osp.isfile(f)]
    if missing:
        raise AuthorsCodeError(
            f'--authors-code {path}: expected a clone of {REPOSITORY} (its models/ folder '
            f'with partialnet.py, irpe.py and dgconv.py); missing {missing}. '
            f'Clone it with: git clone {REPOSITORY}')
    try:
        import timm  # noqa: F401
    except ImportError:
        raise AuthorsCodeError('the authors\' models/partialnet.py imports timm: pip install '
                               '"partialnet-mm[peers]" (or: pip install timm==1.0.31 '
                               '--no-deps)') from None
    try:
        import easydict  # noqa: F401
    except ImportError:
        sys.modules['easydict'] = _easydict_stand_in()
    package = sys.modules.get(PACKAGE)
    if package is None or package.__path__ != [models_dir]:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + '.')]:
            del sys.modules[name]
        package = types.ModuleType(PACKAGE)
        package.__path__ = [models_dir]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f'{PACKAGE}.partialnet')


def authors_kwargs(arch: str, kind: str) -> dict:
    """The authors' ``PartialNet`` arguments for a preset (their ``cfg/PartialNet_*.yaml``:
    1280 head features, channel attention on, ``patnet_t0`` heads); ``kind='backbone'``
    is their dense-prediction form (``fork_feat``: four outputs, each with its norm)."""
    settings = parse_arch(arch)
    act = settings['act_cfg']['type']
    if act not in ('GELU', 'ReLU'):
        raise ValueError(f"the authors' PartialNet has act_layer 'GELU' or 'RELU' only, the "
                         f"arch {arch!r} asks for {act!r}")
    return dict(embed_dim=settings['embed_dims'][0], depths=tuple(settings['depths']),
                mlp_ratio=settings['mlp_ratio'], n_div=settings['n_div'], feature_dim=1280,
                drop_path_rate=settings['drop_path_rate'], layer_scale_init_value=0,
                norm_layer='BN', act_layer='GELU' if act == 'GELU' else 'RELU',
                use_channel_attn=True, use_spatial_attn=settings['use_spatial_attn'],
                patnet_t0=True, pconv_fw_type='split_cat', num_classes=1000,
                fork_feat=kind == 'backbone')


def our_weights_in_authors_names(authors: nn.Module, ours: Dict[str, torch.Tensor],
                                 kind: str) -> Dict[str, torch.Tensor]:
    """The authors' state dict with every tensor that has a counterpart in ``ours`` (our
    classifier's ``backbone.*``/``head.*`` keys, or a bare backbone's) replaced by it.

    Tensors without one (index buffers of the relative position encoding) keep the
    authors' values; a shape mismatch stops with both keys named."""
    state = authors.state_dict()
    prefix = '' if kind == 'backbone' else None
    for key, value in state.items():
        mapped = _map_key(key)
        if mapped is None:
            continue
        part, our_key = mapped
        our_key = our_key if prefix == '' else f'{part}.{our_key}'
        if our_key not in ours:
            raise AuthorsCodeError(f'the authors\' {key} has no counterpart {our_key} in our '
                                   f'model: is the clone the version the converter knows?')
        if ours[our_key].shape != value.shape:
            raise AuthorsCodeError(f'the authors\' {key} {tuple(value.shape)} does not fit '
                                   f'our {our_key} {tuple(ours[our_key].shape)}')
        state[key] = ours[our_key].detach().clone()
    return state


def authors_model(module: types.ModuleType, arch: str, kind: str,
                  ours: nn.Module) -> nn.Module:
    """The authors' model of ``arch`` (``kind`` ``classifier`` or ``backbone``) computing
    with the weights of ``ours`` (our model of the same arch and kind), in eval mode."""
    model = module.PartialNet(**authors_kwargs(arch, kind))
    model.load_state_dict(our_weights_in_authors_names(model, ours.state_dict(), kind))
    if kind == 'backbone':  # what the benchmark's training step reads
        model.out_channels = [int(arch_dim) for arch_dim in parse_arch(arch)['embed_dims']]
    return model.eval()


def max_output_difference(authors: nn.Module, ours: nn.Module, hw: Tuple[int, int] = (64, 64),
                          scope_call=None) -> float:
    """Largest absolute difference between the two models' eval outputs on one image."""
    images = torch.randn(1, 3, *hw)
    with torch.no_grad():
        theirs = authors.eval()(images)
        mine = scope_call(images) if scope_call else ours.eval()(images)
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    mine = mine if isinstance(mine, (list, tuple)) else [mine]
    return max(float((a - b).abs().max()) for a, b in zip(theirs, mine))
