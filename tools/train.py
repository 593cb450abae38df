"""Train a detector, segmentor or classifier from a config (mmengine Runner).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options ...]

The config's ``default_scope`` (mmdet, mmseg or mmpretrain) decides which library's models,
datasets and metrics are used. Multi-GPU / multi-node: ``tools/dist_train.sh``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.engine import NonFiniteLossError
from partialnet_mm.runtime import (DataError, check_datasets, explain_data_errors,
                                   find_resume_checkpoint, fp32_without_gpu, own_visualizer,
                                   setup_cpu_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with a PartialNet backbone')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT; without CKPT, from the latest checkpoint in the work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. train_cfg.max_epochs=2)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    own_visualizer(cfg)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    fp32_without_gpu(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise DataError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) '
                            'in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        # the newest complete checkpoint, even if last_checkpoint names a broken one
        cfg.resume, cfg.load_from = True, find_resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    try:
        check_datasets(cfg, loaders, args.config)
        setup_cpu_distributed(cfg, args.launcher)
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        with explain_data_errors(cfg, loaders):
            runner.train()
    except (DataError, CheckpointError, NonFiniteLossError) as err:
        sys.exit(str(err))
    return runner


if __name__ == '__main__':
    main()
