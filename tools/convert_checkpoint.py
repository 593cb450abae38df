"""Convert an authors' PartialNet checkpoint (haiduo/PartialNet) to partialnet-mm key names.

    python tools/convert_checkpoint.py SRC DST [--backbone-only] [--arch ARCH]

SRC may be a plain state dict, a dict wrapping it under ``state_dict`` or ``model``, or a
PyTorch-Lightning ``.ckpt`` (``model.`` prefix). Classification keys and the dense-prediction
output norms (``norm0/2/4/6``) are converted. Default output: the whole classifier, keys as
mmpretrain's ``ImageClassifier`` names them (``backbone.*``, ``head.*``). ``--backbone-only``:
backbone keys without prefix, for ``init_cfg=dict(type='PartialNetPretrained', checkpoint=DST)``.
"""
import argparse
import sys

from partialnet_mm.apis.convert import convert_checkpoint_file
from partialnet_mm.checkpoint import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help="the authors' checkpoint")
    parser.add_argument('dst', help='where to write the converted mmengine checkpoint')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write only the backbone, keys without prefix')
    parser.add_argument('--arch', help='assert the variant (t0, t1, t2, s, m, l); it is '
                        'inferred from the shapes anyway')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        info = convert_checkpoint_file(args.src, args.dst, args.backbone_only, args.arch)
    except (CheckpointError, FileNotFoundError) as err:
        sys.exit(f'convert_checkpoint: {args.src}: {err}')
    print(f'PartialNet-{info["arch"]}: {info["tensors"]} tensors -> {args.dst}'
          + (f' (classes: {info["num_classes"]})' if info['num_classes'] else '')
          + ('' if info['with_out_norm'] else ' (no dense-prediction output norms)'))
    if info['dropped']:
        print(f'left out (--backbone-only): {", ".join(info["dropped"])}')
    return info


if __name__ == '__main__':
    main()
