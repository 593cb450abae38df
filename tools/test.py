"""Test (and evaluate) a checkpoint with a config (mmengine Runner).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out FILE.pkl] [--fuse]

Works for mmdet, mmseg and mmpretrain configs alike (the config's ``default_scope`` decides).
``--show-dir`` writes images with the predictions drawn (boxes and masks, label maps, or
class labels). ``--fuse`` tests the fused inference form of the PartialNet backbone
(``switch_to_deploy()`` after the checkpoint is loaded: same predictions, faster). Multi-GPU:
``tools/dist_test.sh``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from partialnet_mm.analysis import switch_model_to_deploy
from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.runtime import (DataError, check_datasets, enable_visualization,
                                   explain_data_errors, own_visualizer, setup_cpu_distributed)


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
        'checkpoint is loaded; for testing and inference only')
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
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, show=args.show, wait_time=args.wait_time)
    return cfg


def add_dump(runner, cfg, out):
    if not out.endswith(('.pkl', '.pickle')):
        raise DataError(f'--out must be a .pkl file, got {out!r}')
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def fuse_after_loading(runner):
    """``--fuse``: load the checkpoint now (fusion folds its BN statistics), then fold."""
    runner.load_or_resume()  # runner.test() sees it loaded and does not load again
    runner.model.eval()
    switch_model_to_deploy(runner.model)
    runner.logger.info('--fuse: the backbone is in its fused inference form')


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
        if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
            raise DataError(f'checkpoint {args.checkpoint!r} not found')
        check_datasets(cfg, ['test_dataloader'], args.config)
        setup_cpu_distributed(cfg, args.launcher)
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        if args.out:
            add_dump(runner, cfg, args.out)
        if args.fuse:
            fuse_after_loading(runner)
        with explain_data_errors(cfg, ['test_dataloader']):
            metrics = runner.test()
    except (DataError, CheckpointError) as err:
        sys.exit(str(err))
    return metrics


if __name__ == '__main__':
    main()
