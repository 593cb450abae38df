# mmdet's 1x schedule (12 epochs, steps at 8 and 11) with the authors' detection optimizer:
# AdamW lr 2e-4, weight decay 1e-4, no weight decay on norms and on the iRPE tables.
# Layer-wise lr decay: constructor='PartialNetLayerDecayOptimWrapperConstructor' and
# paramwise_cfg.layer_decay_rate (see partialnet_mm/engine/optimizers.py).
_base_ = ['mmdet::_base_/schedules/schedule_1x.py']

optim_wrapper = dict(
    type='OptimWrapper',
    # _delete_: the base's SGD momentum is not merged into AdamW
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0002, betas=(0.9, 0.999),
                   weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'.bias_table': dict(decay_mult=0.)}),
    clip_grad=None)
