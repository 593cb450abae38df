# Semantic FPN on ADE20K with a PartialNet backbone: the protocol of efficient backbones
# (PVT, PoolFormer, FasterNet): 512x512 crops, AdamW lr 2e-4, weight decay 1e-4, poly decay,
# 40k iterations, batch 32 in total (8 GPUs x 4). Per-variant configs set `arch`.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    './partialnet_mmseg_runtime.py',
]
from partialnet_mm.config_helpers import with_label_check  # noqa: E402

crop_size = (512, 512)
num_classes = 150
model = dict(
    pretrained=None,  # the base's ResNet weights; ours come through the backbone's init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=_base_.partialnet_backbone,
    decode_head=dict(num_classes=num_classes))

# label maps with values outside the classes stop training with the file named
train_pipeline = with_label_check(_base_.train_pipeline, num_classes)
test_pipeline = with_label_check(_base_.test_pipeline, num_classes)
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))  # x 8 GPUs = 32
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
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
