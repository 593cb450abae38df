"""Folded (deploy) checkpoints: a trained model's checkpoint with its backbone folded.

The result loads with ``strict=True`` into the same config with
``model.backbone.deploy=True`` (``PartialNet(..., deploy=True)`` builds the folded structure),
so mmdet's, mmseg's and mmpretrain's own test tools evaluate it directly.
"""
import copy
import os.path as osp
from typing import Dict, Optional

from ..checkpoint import CheckpointError
from ..checkpoint.model_files import (backbone_state, read_model_checkpoint,
                                      replace_backbone_state, training_config,
                                      write_model_checkpoint)
from ..models import PartialNet
from ..models.utils.compare import check_input, max_relative_difference
from ..version import __version__

RTOL = 1e-5  # folded vs unfolded outputs: max |diff| <= RTOL * max |unfolded output|


def fold_checkpoint(src: str, dst: str, config: Optional[str] = None,
                    arch: Optional[str] = None, prefix: Optional[str] = None,
                    out_config: Optional[str] = None) -> Dict:
    """Write ``dst``: ``src`` with its PartialNet backbone switched to the inference form.

    Args:
        src (str): A trained checkpoint: a whole model (detector, segmentor, classifier;
            backbone under ``backbone.``) or a bare backbone.
        dst (str): Where to write the folded checkpoint.
        config (str, optional): The config ``src`` was trained with (default: the copy
            mmengine stores in the checkpoint). Needed for the backbone's arguments.
        arch (str, optional): For a bare backbone checkpoint without config: its arch.
        prefix (str, optional): Key prefix of the backbone (default: found).
        out_config (str, optional): Also write a config inheriting ``config`` with
            ``model.backbone.deploy=True``.

    Before writing, the folded backbone is run next to the unfolded one (eval mode) on a
    random input; they must agree within :data:`RTOL` x max|output|, else nothing is
    written. Returns what it stored in ``meta['deploy']``.
    """
    state, meta, prefix = read_model_checkpoint(src, prefix)
    if any(k.startswith(prefix) and k.endswith('stem.conv.bias') for k in state):
        raise CheckpointError(f'{src} is already folded (its stem has no norm)')
    if arch is not None:
        kwargs = dict(arch=arch)
    else:
        cfg = training_config(meta, config)
        kwargs = dict(cfg.model.backbone) if prefix else dict(cfg.model)
    kwargs = {k: copy.deepcopy(v) for k, v in kwargs.items() if k not in ('type', 'init_cfg')}
    kwargs.pop('deploy', None)
    model = PartialNet(**kwargs, init_cfg=None).eval()
    try:
        model.load_state_dict(backbone_state(state, prefix), strict=True)
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f'{src} does not fit the backbone of '
                              f'{config or arch or "its stored config"}: {err}') from None
    folded = copy.deepcopy(model).switch_to_deploy('contiguous')
    rel_diff = max_relative_difference(model, folded, check_input(model))
    if not rel_diff <= RTOL:
        raise CheckpointError(f'the folded backbone differs from the trained one by '
                              f'{rel_diff:.3g} x max|output| (> {RTOL}); nothing written')
    info = dict(source=osp.abspath(src), max_rel_diff=rel_diff,
                backbone_prefix=prefix, partialnet_mm_version=__version__)
    write_model_checkpoint(dst, replace_backbone_state(state, prefix, folded.state_dict()),
                           meta, deploy=info)
    if out_config:
        if not config:
            raise CheckpointError('out_config inherits the training config: pass config')
        base = osp.relpath(osp.abspath(config), osp.dirname(osp.abspath(out_config)))
        with open(out_config, 'w') as f:
            f.write(f'# {osp.basename(config)} with the folded (deploy) backbone; weights: '
                    f'{dst}\n# (written by tools/reparameterize.py)\n'
                    f'_base_ = [{base!r}]\nmodel = dict(backbone=dict(deploy=True))\n')
    return info
