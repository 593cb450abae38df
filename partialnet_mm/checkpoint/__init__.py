"""Checkpoint files: safe loading, the authors' key names, mmengine's allow-list.

Nothing here builds a model: the authors' converter is a function of a state dict and the
arch table, and the backbone (which loads pretrained weights) imports this package, not the
other way round.
"""
from .authors import (AUTHORS_MARKER, OURS_MARKER, backbone_structure,
                      convert_authors_state_dict, describe_structure, preset_of)
from .loading import (CheckpointError, describe_mismatch, load_checkpoint_file,
                      refusal_reason, strip_wrappers, unwrap_state_dict)
from .safe_globals import mmengine_safe_globals

__all__ = [
    'AUTHORS_MARKER', 'OURS_MARKER', 'backbone_structure', 'convert_authors_state_dict',
    'describe_structure', 'preset_of', 'CheckpointError', 'describe_mismatch',
    'load_checkpoint_file', 'refusal_reason', 'strip_wrappers', 'unwrap_state_dict',
    'mmengine_safe_globals'
]
