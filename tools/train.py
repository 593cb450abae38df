"""Train a detector, segmentor or classifier from a config (mmengine Runner).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options ...]

The config's ``default_scope`` (mmdet, mmseg or mmpretrain) decides which library's models,
datasets and metrics are used. Multi-GPU / multi-node: ``tools/dist_train.sh``. A missing
dataset, a missing pretrained checkpoint, a resume checkpoint of another model and a NaN loss
stop the run with one message that names the fix (partialnet_mm.apis.train).
"""
import argparse
import sys

from partialnet_mm.apis import USER_ERRORS, train
from partialnet_mm.runner.launch import add_launch_arguments


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with a PartialNet backbone')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: AMP on a GPU, bfloat16 autocast on the CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT; without CKPT, from the latest complete checkpoint in the '
        'work dir')
    add_launch_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return train(args.config, args.work_dir, args.resume, args.amp, args.auto_scale_lr,
                     args.cfg_options, args.launcher)
    except USER_ERRORS as err:
        sys.exit(str(err))


if __name__ == '__main__':
    main()
