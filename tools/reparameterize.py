"""Fold a trained checkpoint's PartialNet backbone into its inference (deploy) form.

    python tools/reparameterize.py SRC DST [--config CONFIG] [--out-config CONFIG_OUT]
    python tools/test.py CONFIG DST --cfg-options model.backbone.deploy=True

SRC: a detector, segmentor or classifier checkpoint (or a bare backbone with --arch). The
backbone is folded as ``switch_to_deploy()`` folds it (BatchNorms into convolutions, PAT_sp
into the MLP, ...), checked against the unfolded one on a random input, and written with the
rest of the model copied. DST loads with strict=True into the config with
``model.backbone.deploy=True`` (``--out-config`` writes such a config), also with mmdet's,
mmseg's and mmpretrain's own test tools.
"""
import argparse
import sys

from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.deploy import fold_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the trained checkpoint')
    parser.add_argument('dst', help='where to write the folded checkpoint')
    parser.add_argument('--config', help="the training config (default: the checkpoint's "
                        "own copy, meta['cfg'])")
    parser.add_argument('--arch', help='for a bare backbone checkpoint: its arch')
    parser.add_argument('--prefix', help='key prefix of the backbone (default: found)')
    parser.add_argument('--out-config', help='also write a config with the deploy backbone')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        info = fold_checkpoint(args.src, args.dst, args.config, args.arch, args.prefix,
                               args.out_config)
    except CheckpointError as err:
        sys.exit(f'reparameterize: {args.src}: {err}')
    print(f'folded backbone == trained backbone within {info["max_rel_diff"]:.2g} x '
          f'max|output|; written to {args.dst}')
    print('test it with --cfg-options model.backbone.deploy=True'
          + (f', or with {args.out_config}' if args.out_config else ''))
    return info


if __name__ == '__main__':
    main()
