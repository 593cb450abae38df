"""Checkpoint files: safe loading, the authors' key names, pretrained weights into a backbone.

The dependency runs one way: this package knows the backbone (it loads weights into one and
checks converted ones against it); the models know nothing of checkpoint files. The
authors' converter (:mod:`.authors`) is a pure function of a state dict and the arch table;
:mod:`.pretrained` loads and checks, and registers the ``Pretrained`` initialiser the
backbone's ``init_cfg`` uses.
"""
from .authors import (AUTHORS_MARKER, OURS_MARKER, backbone_structure,
                      convert_authors_state_dict, describe_structure, preset_of)
from .loading import (CheckpointError, describe_mismatch, load_checkpoint_file,
                      refusal_reason, strip_wrappers, unreadable_reason, unwrap_state_dict)
from .pretrained import (PartialNetPretrained, convert_state_dict, describe_checkpoint_arch,
                         load_pretrained)
from .safe_globals import mmengine_safe_globals

__all__ = [
    'AUTHORS_MARKER', 'OURS_MARKER', 'backbone_structure', 'convert_authors_state_dict',
    'describe_structure', 'preset_of', 'CheckpointError', 'describe_mismatch',
    'load_checkpoint_file', 'refusal_reason', 'strip_wrappers', 'unreadable_reason',
    'unwrap_state_dict', 'PartialNetPretrained', 'convert_state_dict',
    'describe_checkpoint_arch', 'load_pretrained', 'mmengine_safe_globals'
]
