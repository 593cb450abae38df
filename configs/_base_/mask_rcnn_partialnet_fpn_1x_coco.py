# Mask R-CNN + FPN, 1x schedule, COCO, with a PartialNet backbone: everything shared by the
# per-variant configs, which set `arch` and derive the rest from it.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
from partialnet_mm.config_helpers import project_hooks  # noqa: E402

model = dict(
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        with_out_norm=True,
        norm_cfg=dict(type='BN', requires_grad=True)))

# AdamW as the authors trained Mask R-CNN; no weight decay on norms and iRPE tables.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0002, betas=(0.9, 0.999),
                   weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'.bias_table': dict(decay_mult=0.)}),
    clip_grad=None)

# checkpoints written atomically (a crash or a full disk never breaks the last good one);
# resumed runs draw the same random numbers; a NaN/inf loss stops training clearly
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = project_hooks()
