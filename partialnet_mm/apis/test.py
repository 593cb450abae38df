"""Testing a checkpoint with a config: what ``tools/test.py`` does, as a function."""
import os
import os.path as osp
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.runner import Runner

from ..analysis.models import switch_model_to_deploy
from ..runner import (DataError, check_datasets, enable_visualization, explain_data_errors,
                      setup_cpu_distributed)
from ..runner.tta import enable_tta
from .train import CfgOptions, build_runner, load_run_config


def build_test_config(config: str, checkpoint: str, work_dir: Optional[str] = None,
                      show: bool = False, show_dir: Optional[str] = None,
                      wait_time: float = 2., cfg_options: CfgOptions = None,
                      launcher: str = 'none') -> Config:
    """The config a test run uses (arguments as :func:`test`)."""
    cfg = load_run_config(config, work_dir, cfg_options, launcher)
    cfg.load_from = checkpoint
    if show or show_dir:
        enable_visualization(cfg, show_dir, show=show, wait_time=wait_time)
    return cfg


def add_dump(runner: Runner, cfg: Config, out: str) -> None:
    """Dump the raw predictions to ``out`` (a ``.pkl`` file), as the libraries' ``--out``."""
    if not out.endswith(('.pkl', '.pickle')):
        raise DataError(f'--out must be a .pkl file, got {out!r}')
    if cfg.get('default_scope') == 'mmdet':
        # mmdet's dump (masks as RLE); a detection config has mmdet (load_config checked it)
        from mmdet.evaluation import DumpDetResults
        dump = DumpDetResults
    else:
        dump = DumpResults
    runner.test_evaluator.metrics.append(dump(out_file_path=out))


def fuse_after_loading(runner: Runner) -> None:
    """``--fuse``: load the checkpoint now (folding uses its BN statistics), then fold."""
    runner.load_or_resume()  # runner.test() sees it loaded and does not load again
    runner.model.eval()
    switch_model_to_deploy(runner.model)
    runner.logger.info('--fuse: the backbone is in its folded inference form')


def test(config: str, checkpoint: str, work_dir: Optional[str] = None,
         out: Optional[str] = None, show: bool = False, show_dir: Optional[str] = None,
         wait_time: float = 2., fuse: bool = False, cfg_options: CfgOptions = None,
         launcher: str = 'none', tta: bool = False) -> Dict[str, float]:
    """Evaluate ``checkpoint`` with ``config``; returns the metrics.

    Args:
        config (str): Config file (mmdet, mmseg or mmpretrain; its ``default_scope`` decides).
        checkpoint (str): The weights (a folded checkpoint with
            ``cfg_options=['model.backbone.deploy=True']``).
        work_dir (str, optional): Where the metrics are logged.
        out (str, optional): Dump the raw predictions to this ``.pkl`` file.
        show (bool): Show the drawn predictions.
        show_dir (str, optional): Write images with the predictions drawn into this folder.
        wait_time (float): Seconds each shown image stays.
        fuse (bool): Fold the PartialNet backbone (``switch_to_deploy``) after loading the
            checkpoint: the same predictions, faster.
        cfg_options (dict | list[str], optional): Overrides (``key=value``).
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        tta (bool): Test-time augmentation with the config's ``tta_model`` and
            ``tta_pipeline`` (:func:`~partialnet_mm.runner.tta.enable_tta`).
    """
    cfg = build_test_config(config, checkpoint, work_dir, show, show_dir, wait_time,
                            cfg_options, launcher)
    if tta:
        enable_tta(cfg)
    if not osp.isfile(checkpoint) and '://' not in checkpoint:
        raise DataError(f'checkpoint {checkpoint!r} not found')
    check_datasets(cfg, ['test_dataloader'], config)
    if launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', '0')
    setup_cpu_distributed(cfg, launcher)
    runner = build_runner(cfg)
    if out:
        add_dump(runner, cfg, out)
    if fuse:
        fuse_after_loading(runner)
    with explain_data_errors(cfg, ['test_dataloader']):
        return runner.test()
