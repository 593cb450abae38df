"""Whole-model checkpoints (detector, segmentor, classifier) that hold a PartialNet backbone:
finding the backbone's keys, the training config stored with them, writing a converted copy.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config

from .authors import OURS_MARKER
from .loading import CheckpointError, load_checkpoint_file, unwrap_state_dict


def find_backbone_prefix(state_dict: Dict[str, torch.Tensor],
                         prefix: Optional[str] = None) -> str:
    """The key prefix of the one PartialNet backbone in ``state_dict`` (``'backbone.'``,
    ``''`` for a bare backbone); ``prefix`` asserts it."""
    if prefix is not None:
        if f'{prefix}{OURS_MARKER}' not in state_dict:
            raise CheckpointError(f'no {prefix}{OURS_MARKER!r} in the checkpoint')
        return prefix
    found = [k[:-len(OURS_MARKER)] for k in state_dict if k.endswith(OURS_MARKER)]
    if len(found) != 1:
        raise CheckpointError(f'{"no" if not found else "several"} PartialNet backbones in '
                              f'the checkpoint (prefixes {found}); name one with --prefix')
    return found[0]


def read_model_checkpoint(path: str, prefix: Optional[str] = None
                          ) -> Tuple[Dict[str, torch.Tensor], dict, str]:
    """``(state_dict, meta, backbone_prefix)`` of a model checkpoint file (weights-only)."""
    if not osp.isfile(path):
        raise CheckpointError(f'{path} not found')
    ckpt = load_checkpoint_file(path)
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    state_dict = unwrap_state_dict(ckpt)
    return state_dict, meta if isinstance(meta, dict) else {}, \
        find_backbone_prefix(state_dict, prefix)


def backbone_state(state_dict: Dict[str, torch.Tensor], prefix: str) -> 'OrderedDict':
    """The backbone's tensors, prefix removed."""
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


def replace_backbone_state(state_dict: Dict[str, torch.Tensor], prefix: str,
                           backbone: Dict[str, torch.Tensor]) -> 'OrderedDict':
    """``state_dict`` with the backbone's tensors replaced by ``backbone`` (the rest copied)."""
    out = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith(prefix))
    out.update((prefix + k, v) for k, v in backbone.items())
    return out


def training_config(meta: dict, config: Optional[str] = None) -> Config:
    """The config a checkpoint was trained with: the file ``config``, else the copy mmengine
    stores in the checkpoint (``meta['cfg']``)."""
    if config:
        return Config.fromfile(config)
    if isinstance(meta.get('cfg'), str):
        return Config.fromstring(meta['cfg'], file_format='.py')
    raise CheckpointError("the checkpoint carries no config (meta['cfg']); pass the training "
                          'config with --config')


KEPT_META = ('dataset_meta', 'experiment_name', 'seed', 'epoch', 'iter')


def write_model_checkpoint(path: str, state_dict: Dict[str, torch.Tensor], meta: dict,
                           **extra_meta) -> None:
    """Save ``state_dict`` with the parts of ``meta`` that describe the trained model
    (:data:`KEPT_META`) and ``extra_meta``."""
    out_meta = {k: meta[k] for k in KEPT_META if k in meta}
    out_meta.update(extra_meta)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    torch.save(dict(meta=out_meta, state_dict=state_dict), path)
