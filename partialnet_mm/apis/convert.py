"""Converting the authors' checkpoint files to our key names."""
import os
import os.path as osp
from typing import Dict, Optional

import torch

from ..checkpoint import convert_state_dict, load_checkpoint_file, unwrap_state_dict
from ..version import __version__


def convert_checkpoint_file(src: str, dst: str, backbone_only: bool = False,
                            arch: Optional[str] = None) -> Dict:
    """Convert an authors' PartialNet checkpoint file (``haiduo/PartialNet``) to ours.

    ``src`` may be a plain state dict, a dict wrapping it under ``state_dict`` or ``model``,
    or a PyTorch-Lightning ``.ckpt`` (``model.`` prefix, hyper-parameters pickled as
    Lightning objects, which are replaced by inert stand-ins: never imported or run). The
    whole classifier is written with keys as mmpretrain's ``ImageClassifier`` names them;
    ``backbone_only`` writes the backbone without prefix (for ``init_cfg=dict(type=
    'PartialNetPretrained', checkpoint=dst)``). Returns the conversion info (``arch``,
    ``num_classes``, ``with_out_norm``, ``dropped``).
    """
    src_state = unwrap_state_dict(load_checkpoint_file(src, allow_inert=True))
    state_dict, info = convert_state_dict(src_state, backbone_only=backbone_only, arch=arch)
    meta = dict(arch=info['arch'], num_classes=info['num_classes'],
                with_out_norm=info['with_out_norm'], backbone_only=backbone_only,
                converted_from=osp.abspath(src), partialnet_mm_version=__version__)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state_dict), dst)
    return dict(info, tensors=len(state_dict))
