"""Training from a config: what ``tools/train.py`` does, as a function."""
import os
import os.path as osp
from typing import Optional, Sequence, Union

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..runner import (DataError, check_datasets, explain_data_errors, find_resume_checkpoint,
                      amp_for_device, load_config, own_visualizer, setup_cpu_distributed)
from ..runner.data_checks import ContentChecks, paused_gc
from ..runner.resume import check_resume_fits

CfgOptions = Optional[Union[dict, Sequence[str]]]


def default_work_dir(config: str) -> str:
    """``./work_dirs/<config name>``, as OpenMMLab's tools name it."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def load_run_config(config: str, work_dir: Optional[str], cfg_options: CfgOptions,
                    launcher: str) -> Config:
    """What every run's config gets: overrides, launcher, work dir (the config's, else
    ``./work_dirs/<config name>``) and a visualizer of its own."""
    cfg = load_config(config, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config)
    own_visualizer(cfg)
    return cfg


def build_train_config(config: str, work_dir: Optional[str] = None,
                       resume: Optional[str] = None, amp: bool = False,
                       auto_scale_lr: bool = False, cfg_options: CfgOptions = None,
                       launcher: str = 'none') -> Config:
    """The config a training run uses.

    Args:
        config (str): Config file (also ``mmdet::...``).
        work_dir (str, optional): Where logs and checkpoints go (default: the config's, else
            ``./work_dirs/<config name>``).
        resume (str, optional): ``'auto'`` (the newest *complete* checkpoint in the work
            dir) or a checkpoint path.
        amp (bool): Mixed precision: mmengine's AMP on a GPU, bfloat16 autocast on the CPU
            (:class:`~partialnet_mm.engine.amp.AnyDeviceAmpOptimWrapper`).
        auto_scale_lr (bool): Scale the lr by the total batch size over
            ``auto_scale_lr.base_batch_size``.
        cfg_options (dict | list[str], optional): Overrides (``key=value``).
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
    """
    cfg = load_run_config(config, work_dir, cfg_options, launcher)
    if amp:
        cfg.optim_wrapper.type = 'AnyDeviceAmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    amp_for_device(cfg)
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise DataError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) '
                            'in the config')
        cfg.auto_scale_lr.enable = True
    if resume == 'auto':
        # the newest complete checkpoint, even if last_checkpoint names a broken one
        cfg.resume, cfg.load_from = True, find_resume_checkpoint(cfg.work_dir)
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The Runner of ``cfg`` (its own ``runner_type`` if it names one)."""
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def build_datasets(runner: Runner) -> None:
    """Build the train and val loops, and with them their datasets, as ``runner.train()``
    does first (it then keeps the loops it finds built)."""
    runner.train_loop  # noqa: B018  (the properties build the loops)
    runner.val_loop  # noqa: B018


def train(config: str, work_dir: Optional[str] = None, resume: Optional[str] = None,
          amp: bool = False, auto_scale_lr: bool = False, cfg_options: CfgOptions = None,
          launcher: str = 'none') -> Runner:
    """Train ``config`` (arguments as :func:`build_train_config`); returns the Runner.

    Before anything is built, every dataset path the run needs must exist
    (:class:`~partialnet_mm.runner.DataError` names the missing ones and the fix); a resumed
    run must fit the checkpoint it continues from
    (:class:`~partialnet_mm.checkpoint.CheckpointError`); a pretrained backbone checkpoint
    that is missing stops the run before the first iteration. The datasets' contents are
    checked once per dataset version (``runner.data_checks.ContentChecks``): segmentation
    folders before anything is built, COCO files on the parse their datasets do anyway. The
    datasets are built with cyclic garbage collection paused (``paused_gc``).
    """
    cfg = build_train_config(config, work_dir, resume, amp, auto_scale_lr, cfg_options,
                             launcher)
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    check_datasets(cfg, loaders, config)
    contents = ContentChecks(cfg, loaders, config)
    contents.check_folders()
    if launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', '0')
    setup_cpu_distributed(cfg, launcher)
    runner = build_runner(cfg)
    if cfg.get('resume') and cfg.get('load_from'):
        check_resume_fits(runner.model, cfg.load_from, config)
    with explain_data_errors(cfg, loaders):
        with contents.on_dataset_parse(), paused_gc():
            build_datasets(runner)
        runner.train()
    return runner
