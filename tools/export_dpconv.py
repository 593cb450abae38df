"""Export a trained DPConv checkpoint to a plain PartialNet checkpoint with the learned splits.

    python tools/export_dpconv.py SRC DST [--config CONFIG] [--out-config CONFIG_OUT]

SRC is an mmengine checkpoint of a whole model (detector, segmentor or classifier) or of a
bare backbone, trained with DPConv mixers (``mixer_cfgs=[dict(type='DPConv', ...), ...]``).
Every DPConv mixer becomes the plain mixer it generalises with its learned convolved width;
the rest of the model is copied. The exported backbone is checked against the DPConv one
before anything is written (partialnet_mm.dpconv.export). The config change is printed,
stored in DST's ``meta['dpconv_export']`` and, with ``--out-config``, written as a config
inheriting CONFIG (without ``DPConvHook``).
"""
import argparse
import sys

from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.dpconv.export import export_checkpoint, learned_splits_table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the DPConv training checkpoint (mmengine .pth)')
    parser.add_argument('dst', help='where to write the plain checkpoint')
    parser.add_argument('--config', help="the training config (default: the checkpoint's "
                        "own copy, meta['cfg'])")
    parser.add_argument('--out-config', help='also write a config for the exported model, '
                        'inheriting --config')
    parser.add_argument('--prefix', help="key prefix of the backbone (default: found, e.g. "
                        "'backbone.')")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        info = export_checkpoint(args.src, args.dst, args.config, args.out_config, args.prefix)
    except CheckpointError as err:
        sys.exit(f'export_dpconv: {args.src}: {err}')
    print('learned splits (convolved / channels):')
    print('\n'.join(learned_splits_table(info)))
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
