# UperNet on ADE20K with a PartialNet backbone: mmseg's UperNet with the 160k schedule of its
# Swin / ConvNeXt UperNet configs (512 x 512 crops, batch 16 = 8 GPUs x 2, linear warm-up for
# 1500 iterations then poly decay to 0, AdamW lr 6e-5, weight decay 0.01 as for Swin-T), no
# weight decay on norms and iRPE tables, SyncBN as in the Semantic FPN configs. Per-variant
# configs set `arch`. Layer-wise lr decay: see partialnet_mm/engine/optimizers.py.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './partialnet_mmseg_runtime.py',
]
from partialnet_mm.config_helpers import with_label_check  # noqa: E402

crop_size = (512, 512)
num_classes = 150
model = dict(
    pretrained=None,  # the base's ResNet weights; ours come through the backbone's init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=_base_.partialnet_backbone,
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

# label maps with values outside the classes stop training with the file named
train_pipeline = with_label_check(_base_.train_pipeline, num_classes)
test_pipeline = with_label_check(_base_.test_pipeline, num_classes)
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))  # x 8 GPUs = 16
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
max_iters = 160000
warmup_iters = 1500
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'.bias_table': dict(decay_mult=0.)}),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
# test-time augmentation (mmseg's tools/test.py --tta, partialnet_mm.runner.enable_tta):
# tta_model (SegTTAModel) and tta_pipeline (6 scales x flip) come from mmseg's bases.
# checkpoints written atomically: a crash or a full disk never breaks the last good one
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
