# What every PartialNet segmentation config shares, on top of mmseg's default runtime: the
# project's hooks and the backbone (SyncBN, as mmseg's own configs). Family bases (fpn_*,
# upernet_*) list this file instead of mmseg's default_runtime.py and use
# `partialnet_backbone` for their `model.backbone` (named apart: mmengine refuses a key that
# two bases of one config both define).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
from partialnet_mm.config_helpers import project_hooks  # noqa: E402

# replaces the base model's ResNet; per-variant configs add `arch` and the ImageNet weights
partialnet_backbone = dict(
    _delete_=True,
    type='PartialNet',
    out_indices=(0, 1, 2, 3),
    with_out_norm=True,
    norm_cfg=dict(type='SyncBN', requires_grad=True))

# resumed runs draw the same random numbers; a NaN/inf loss stops training clearly. (The
# family bases set the atomic checkpoint hook: mmseg's schedules define default_hooks.)
custom_hooks = project_hooks()
