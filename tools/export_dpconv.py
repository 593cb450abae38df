"""Export a trained DPConv checkpoint to a plain PartialNet checkpoint with the learned splits.

    python tools/export_dpconv.py SRC DST [--config CONFIG] [--out-config CONFIG_OUT]

SRC is an mmengine checkpoint of a whole model (detector, segmentor or classifier, backbone
under ``backbone.``) or of a bare backbone, trained with ``model.backbone.dpconv`` on. Every
DPConv layer becomes a plain PConv / PAT_ch / PAT_sf whose convolved width is the learned
one (``(W * M)[:c, :c]`` as its 3x3 weight, the ``[c:]`` parts of the attention); the gates
are gone. The rest of the model is copied as it is.

The backbone's config is read from CONFIG (the training config) or, without it, from the
copy mmengine stores in the checkpoint (``meta['cfg']``). The plain backbone needs its arch
with ``conv_channels`` (one width per block) and no ``dpconv``: the tool prints that config
change, stores it in DST's ``meta['dpconv_export']`` and, with ``--out-config``, writes a
config inheriting CONFIG with the change applied (and ``DPConvHook`` removed).

Before writing, the exported backbone is run next to the DPConv backbone (eval mode) on a
random input; they must agree within 1e-5 x max|output|, else nothing is written.
"""
import argparse
import copy
import os
import os.path as osp
import sys
from collections import OrderedDict

import torch
from mmengine.config import Config

from partialnet_mm import PartialNet, __version__, load_checkpoint_file
from partialnet_mm.checkpoint import OURS_MARKER, CheckpointError, unwrap_state_dict
from partialnet_mm.models.layers.dpconv import dpconv_layers, export_dpconv

RTOL = 1e-5  # exported vs DPConv outputs: max |diff| <= RTOL * max |DPConv output|


class ExportError(RuntimeError):
    """The checkpoint cannot be exported as asked; the message says why and what to do."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the DPConv training checkpoint (mmengine .pth)')
    parser.add_argument('dst', help='where to write the plain checkpoint')
    parser.add_argument('--config', help="the training config (default: the checkpoint's "
                        "own copy, meta['cfg'])")
    parser.add_argument('--out-config', help='also write a config for the exported model, '
                        'inheriting --config')
    parser.add_argument('--prefix', help="key prefix of the backbone (default: found from "
                        f"the '{OURS_MARKER}' key, e.g. 'backbone.')")
    return parser.parse_args(argv)


def find_prefix(state_dict, prefix=None) -> str:
    if prefix is not None:
        if f'{prefix}{OURS_MARKER}' not in state_dict:
            raise ExportError(f'no {prefix}{OURS_MARKER!r} in the checkpoint')
        return prefix
    found = [k[:-len(OURS_MARKER)] for k in state_dict if k.endswith(OURS_MARKER)]
    if len(found) != 1:
        raise ExportError(f'{"no" if not found else "several"} PartialNet backbones in the '
                          f'checkpoint (prefixes {found}); name one with --prefix')
    return found[0]


def backbone_config(args, meta) -> Config:
    if args.config:
        return Config.fromfile(args.config)
    if isinstance(meta.get('cfg'), str):
        return Config.fromstring(meta['cfg'], file_format='.py')
    raise ExportError("the checkpoint carries no config (meta['cfg']); pass the training "
                      'config with --config')


def build_backbone(kwargs: dict) -> PartialNet:
    kwargs = {k: copy.deepcopy(v) for k, v in kwargs.items() if k not in ('type', 'init_cfg')}
    return PartialNet(**kwargs, init_cfg=None).eval()


def check_outputs(dpconv_model, plain_model, in_channels: int) -> float:
    """Largest ``max|diff| / max|ref|`` over the outputs on a random, non-square input."""
    x = torch.randn(2, in_channels, 7 * plain_model.total_stride,
                    5 * plain_model.total_stride, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        refs, outs = dpconv_model(x), plain_model(x)
    return max(((o - r).abs().max() / r.abs().max().clamp(min=1e-30)).item()
               for o, r in zip(outs, refs))


def config_snippet(arch: dict) -> str:
    """The config lines that turn the training config into the exported model's."""
    items = ''.join(f'            {k}={_as_dict_call(v)},\n' for k, v in arch.items())
    return ('model = dict(\n    backbone=dict(\n        dpconv=None,\n        arch=dict(\n'
            f'            _delete_=True,\n{items}        )))')


def _as_dict_call(value) -> str:
    """A config-style ``dict(key=value, ...)`` expression of a (nested) dict."""
    if isinstance(value, dict):
        return 'dict(' + ', '.join(f'{k}={_as_dict_call(v)}' for k, v in value.items()) + ')'
    return repr(value)


def export(args):
    try:
        ckpt = load_checkpoint_file(args.src)
    except FileNotFoundError:
        raise ExportError(f'{args.src} not found') from None
    state = unwrap_state_dict(ckpt)
    meta = ckpt.get('meta') or {} if isinstance(ckpt, dict) else {}
    prefix = find_prefix(state, args.prefix)
    backbone_state = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                                 if k.startswith(prefix))
    if not any(k.endswith('.conv.gates') for k in backbone_state):
        raise ExportError('the backbone has no DPConv gates (*.conv.gates): it is already a '
                          'plain PartialNet, nothing to export')
    cfg = backbone_config(args, meta)
    kwargs = dict(cfg.model.backbone)
    if not kwargs.get('dpconv'):
        raise ExportError('the config has no model.backbone.dpconv, but the checkpoint has '
                          'DPConv gates: pass the config it was trained with (--config)')
    model = build_backbone(kwargs)
    try:
        model.load_state_dict(backbone_state, strict=True)
    except RuntimeError as err:
        raise ExportError(f'the checkpoint does not fit the config\'s backbone: {err}') from None

    plain_state, conv_channels = export_dpconv(model)
    arch = dict(embed_dims=model.arch['embed_dims'], depths=model.arch['depths'])
    arch.update((k, v) for k, v in model.arch.items() if k not in arch)
    arch['conv_channels'] = conv_channels
    plain_kwargs = dict(kwargs, arch=arch)
    plain_kwargs.pop('dpconv')
    plain = build_backbone(plain_kwargs)
    plain.load_state_dict(plain_state, strict=True)
    rel_diff = check_outputs(model, plain, model.in_channels)
    if not rel_diff <= RTOL:
        raise ExportError(f'the exported backbone differs from the DPConv backbone by '
                          f'{rel_diff:.3g} x max|output| (> {RTOL}); nothing written')

    splits = OrderedDict((name, (layer.conv_channels, layer.channels))
                         for name, layer in dpconv_layers(model))
    # gates not in legal order (an 'on' gate before an 'off' one): the block's mask is
    # sparser than dense; exported exactly all the same
    unordered = [name for name, layer in dpconv_layers(model)
                 if layer.conv.states().tolist() != sorted(layer.conv.states().tolist())]
    out_state = OrderedDict((k, v) for k, v in state.items() if not k.startswith(prefix))
    out_state.update((prefix + k, v) for k, v in plain_state.items())
    snippet = config_snippet(arch)
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'DPConvHook']
    info = dict(
        source=osp.abspath(args.src), arch=arch, conv_channels=conv_channels, splits=splits,
        unordered=unordered,
        config_change=dict(model=dict(backbone=dict(arch=arch, dpconv=None)),
                           remove_hooks=['DPConvHook']),
        config_snippet=snippet, max_rel_diff=rel_diff, partialnet_mm_version=__version__)
    out_meta = {k: meta[k] for k in ('dataset_meta', 'experiment_name', 'seed', 'epoch',
                                     'iter') if k in meta}
    out_meta['dpconv_export'] = info
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(meta=out_meta, state_dict=out_state), args.dst)

    if args.out_config:
        if not args.config:
            raise ExportError('--out-config inherits the training config: pass it with --config')
        base = osp.relpath(osp.abspath(args.config), osp.dirname(osp.abspath(args.out_config)))
        with open(args.out_config, 'w') as f:
            f.write(f'# {osp.basename(args.config)} with the splits DPConv learned in '
                    f'{osp.basename(args.src)}, as a plain PartialNet\n'
                    f'# (written by tools/export_dpconv.py; weights: {args.dst})\n'
                    f'_base_ = [{base!r}]\n\n{snippet}\n'
                    f'custom_hooks = {hooks!r}\n')
    return info


def main(argv=None):
    args = parse_args(argv)
    try:
        info = export(args)
    except (ExportError, CheckpointError) as err:
        sys.exit(f'export_dpconv: {args.src}: {err}')
    print('learned splits (convolved / channels):')
    for name, (c, d) in info['splits'].items():
        note = ('  gates out of order: grouped (sparser) 3x3 weight'
                if name in info['unordered'] else '')
        print(f'  stage {name[1]} block {name.split(".b")[1]}: {c:4d} / {d:<4d} '
              f'(1/{d // c}){note}')
    print(f'exported backbone == DPConv backbone within {info["max_rel_diff"]:.2g} x '
          f'max|output|; written to {args.dst}')
    print('config change for the exported checkpoint (stored in its '
          "meta['dpconv_export']; also remove DPConvHook from custom_hooks):")
    print(info['config_snippet'])
    if args.out_config:
        print(f'config written to {args.out_config}')
    return info


if __name__ == '__main__':
    main()
