# Semantic FPN on ADE20K with a PartialNet backbone: the protocol of efficient backbones
# (PVT, PoolFormer, FasterNet): 512x512 crops, AdamW lr 2e-4, weight decay 1e-4, poly decay,
# 40k iterations, batch 32 in total (8 GPUs x 4). The per-variant configs set the backbone's
# `arch` and checkpoint and the FPN's `in_channels`.
_base_ = [
    './models/fpn_partialnet.py',
    './datasets/ade20k_checked.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    './partialnet_mmseg_runtime.py',
]

crop_size = (512, 512)
num_classes = 150
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=4)  # x 8 GPUs = 32
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, betas=(0.9, 0.999), weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'.bias_table': dict(decay_mult=0.)}),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
# checkpoints written atomically: a crash or a full disk never breaks the last good one
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
