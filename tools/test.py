"""Test (and evaluate) a checkpoint with a config (mmengine Runner).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out FILE.pkl]
                         [--fuse] [--cfg-options ...]

Works for mmdet, mmseg and mmpretrain configs alike (the config's ``default_scope`` decides).
``--show-dir`` writes images with the predictions drawn; ``--fuse`` tests the folded
inference form of the PartialNet backbone (same predictions, faster); a checkpoint written by
``tools/reparameterize.py`` is tested with ``--cfg-options model.backbone.deploy=True``.
Multi-GPU: ``tools/dist_test.sh``.
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from partialnet_mm.apis import USER_ERRORS, test


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
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. test_dataloader.batch_size=1)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return test(args.config, args.checkpoint, args.work_dir, args.out, args.show,
                    args.show_dir, args.wait_time, args.fuse, args.cfg_options, args.launcher)
    except USER_ERRORS as err:
        sys.exit(str(err))


if __name__ == '__main__':
    main()
