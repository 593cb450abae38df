# What every PartialNet detection config shares, on top of mmdet's default runtime:
# the project's hooks and the backbone and optimizer settings of the authors' detection recipe.
# Family bases (mask_rcnn_*, retinanet_*, cascade_mask_rcnn_*) list this file instead of
# mmdet's default_runtime.py and use `partialnet_backbone` / `partialnet_optim_wrapper` for
# their `model.backbone` / `optim_wrapper` (named apart: mmengine refuses a key that two bases
# of one config both define).
_base_ = ['mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
from partialnet_mm.config_helpers import project_hooks  # noqa: E402

# replaces the base model's ResNet; per-variant configs add `arch` and the ImageNet weights
partialnet_backbone = dict(
    _delete_=True,
    type='PartialNet',
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_eval=False,
    with_out_norm=True,
    norm_cfg=dict(type='BN', requires_grad=True))

# AdamW as the authors trained their detectors; no weight decay on norms and iRPE tables.
# Layer-wise lr decay: constructor='PartialNetLayerDecayOptimWrapperConstructor' and
# paramwise_cfg.layer_decay_rate (see partialnet_mm/engine/optimizers.py).
partialnet_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0002, betas=(0.9, 0.999),
                   weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'.bias_table': dict(decay_mult=0.)}),
    clip_grad=None)

# checkpoints written atomically (a crash or a full disk never breaks the last good one);
# resumed runs draw the same random numbers; a NaN/inf loss stops training clearly
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = project_hooks()
