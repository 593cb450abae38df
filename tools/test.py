"""Test (and evaluate) a checkpoint with a config (mmengine Runner).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out FILE.pkl]
                         [--fuse] [--cfg-options ...]

Works for mmdet, mmseg and mmpretrain configs alike (the config's ``default_scope`` decides).
``--show-dir`` writes images with the predictions drawn; ``--fuse`` tests the folded
inference form of the PartialNet backbone (same predictions, faster); a checkpoint written by
``tools/reparameterize.py`` is tested with ``--cfg-options model.backbone.deploy=True``;
``--tta`` uses the config's test-time augmentation (RetinaNet, the segmentors).
Multi-GPU: ``tools/dist_test.sh``.
"""
import argparse
import sys

from partialnet_mm.apis import USER_ERRORS, test
from partialnet_mm.runner.launch import add_launch_arguments


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model with a PartialNet backbone')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images are saved')
    parser.add_argument('--wait-time', type=float, default=2, help='interval of --show (s)')
    parser.add_argument(
        '--fuse', action='store_true',
        help='fold the PartialNet backbone for inference (switch_to_deploy) once the '
        'checkpoint is loaded')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model and "
                        'tta_pipeline')
    add_launch_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return test(args.config, args.checkpoint, args.work_dir, args.out, args.show,
                    args.show_dir, args.wait_time, args.fuse, args.cfg_options, args.launcher,
                    args.tta)
    except USER_ERRORS as err:
        sys.exit(str(err))


if __name__ == '__main__':
    main()
