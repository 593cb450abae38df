"""Resuming: finding the checkpoint a ``--resume`` continues from, and checking it fits."""
import glob
import os.path as osp
import warnings
import zipfile
from typing import Optional

import torch.nn as nn
from mmengine.model import is_model_wrapper

from ..checkpoint import (OURS_MARKER, CheckpointError, describe_checkpoint_arch,
                          describe_mismatch, load_checkpoint_file, unwrap_state_dict)


def is_complete_checkpoint(path: str) -> bool:
    """True for a checkpoint file torch can open: a zip archive with its directory written
    (the directory is written last, so a file cut short by a crash fails this)."""
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from.

    The one named in ``work_dir/last_checkpoint`` if it is complete, else the newest
    complete ``*.pth`` in ``work_dir`` (with a warning saying so), else None.
    """
    named = ''
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
    if named and is_complete_checkpoint(named):
        return named
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime, reverse=True)
    for candidate in candidates:
        if is_complete_checkpoint(candidate):
            if named or osp.isfile(marker):
                warnings.warn(f'{marker} names {named!r}, which is missing or incomplete; '
                              f'resuming from {candidate} instead')
            return candidate
    return None


def check_resume_fits(model: nn.Module, checkpoint: str, config: str = '') -> None:
    """Refuse to resume ``model`` from a ``checkpoint`` of another architecture.

    mmengine resumes with ``strict=False``: a checkpoint of another model loads with
    warnings only and training continues from half-loaded weights (or dies later in the
    optimizer). Every tensor of the checkpoint must exist in the model with the same shape.
    """
    inner = model.module if is_model_wrapper(model) else model
    state = unwrap_state_dict(load_checkpoint_file(checkpoint))
    own = inner.state_dict()
    mismatched = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if not (mismatched or unexpected or missing):
        return
    described = ''
    for prefix in ('backbone.', ''):
        backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if OURS_MARKER in backbone:
            described = f' (its backbone looks like {describe_checkpoint_arch(backbone)})'
            break
    raise CheckpointError(
        f'cannot resume from {checkpoint}{described} with {config or "this config"}: '
        + describe_mismatch({k: state[k] for k in mismatched + unexpected},
                            {k: own[k].shape for k in mismatched}, 'the checkpoint',
                            'the model this config builds', missing=missing)
        + '. Resume with the config the run was trained with (a copy is in its work dir), '
          'or train in a new work dir (--work-dir) and start from the weights with '
          '--cfg-options load_from=<checkpoint>.')
