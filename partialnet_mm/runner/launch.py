"""Adapting a config to a machine without GPUs: mixed precision and distributed runs on the CPU."""
import argparse
import os
import subprocess
import torch
from mmengine.config import DictAction
from mmengine.logging import print_log

from ..engine.amp import amp_device_available
from ..engine.distributed import init_cpu_distributed
from .datasets import DataError


def amp_for_device(cfg) -> bool:
    """Let a config that asks for mmengine's ``AmpOptimWrapper`` train without a GPU.

    mmengine's wrapper refuses to be built there; :class:`AnyDeviceAmpOptimWrapper` is the
    same wrapper where a GPU is, and autocasts to bfloat16 on the CPU. Returns True (after one
    log line) if the wrapper was switched.
    """
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') != 'AmpOptimWrapper' or amp_device_available():
        return False
    wrapper['type'] = 'AnyDeviceAmpOptimWrapper'
    print_log('No GPU: mixed precision (AmpOptimWrapper) runs as AnyDeviceAmpOptimWrapper, '
              'bfloat16 autocast on the CPU without loss scaling.', logger='current')
    return True


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Make a distributed launch work without GPUs; True if it did anything.

    mmengine's ``pytorch`` and ``slurm`` launchers call ``torch.cuda.set_device`` and wrap the
    model in DDP with ``device_ids=[LOCAL_RANK]``; both need GPUs. Without CUDA we join the
    process group with gloo ourselves (srun's variables read as mmengine reads them) (mmengine then skips its own initialisation) and wrap the model in
    :class:`~partialnet_mm.engine.distributed.CPUDistributedDataParallel`, which also makes
    SyncBN layers work on CPU.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher not in ('pytorch', 'slurm'):
        raise DataError(f'--launcher {launcher} needs GPUs here; on CPUs launch with torchrun '
                        f'(tools/dist_train.sh / tools/dist_test.sh) or srun '
                        f'(tools/slurm_train.sh / tools/slurm_test.sh)')
    if launcher == 'slurm':
        torchrun_env_from_slurm()
    init_cpu_distributed()
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True


def torchrun_env_from_slurm(default_port: int = 29500) -> None:
    """Set torchrun's variables from srun's, as mmengine's slurm launcher does before it
    picks a GPU: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from ``SLURM_PROCID``/``SLURM_NTASKS``/
    ``SLURM_LOCALID``, ``MASTER_ADDR`` the job's first node (``scontrol show hostnames``)
    unless set, ``MASTER_PORT`` ``default_port`` unless set."""
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
               if k not in os.environ]
    if missing:
        raise DataError(f'--launcher slurm needs srun\'s environment ({missing} missing): '
                        f'start with tools/slurm_train.sh / tools/slurm_test.sh')
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    if 'MASTER_ADDR' not in os.environ:
        try:
            hosts = subprocess.run(
                ['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
                check=True, capture_output=True, text=True).stdout.split()
        except (OSError, subprocess.CalledProcessError) as err:
            raise DataError(f'--launcher slurm: cannot resolve the master node of '
                            f'SLURM_NODELIST={os.environ["SLURM_NODELIST"]!r} with scontrol '
                            f'({err}); set MASTER_ADDR') from None
        os.environ['MASTER_ADDR'] = hosts[0]
    os.environ.setdefault('MASTER_PORT', str(default_port))


def add_launch_arguments(parser) -> None:
    """The arguments tools/train.py and tools/test.py share with OpenMMLab's own tools:
    ``--cfg-options``, ``--launcher`` and ``--local-rank`` (also exported as LOCAL_RANK)."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. train_cfg.max_epochs=2)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        action=_LocalRank)


class _LocalRank(argparse.Action):
    """``--local-rank``, which older launchers pass instead of the LOCAL_RANK variable."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, value)
        os.environ.setdefault('LOCAL_RANK', str(value))
