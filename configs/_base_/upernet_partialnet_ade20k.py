# UperNet on ADE20K with a PartialNet backbone: mmseg's UperNet with the 160k schedule of its
# Swin / ConvNeXt UperNet configs (512 x 512 crops, batch 16 = 8 GPUs x 2, linear warm-up for
# 1500 iterations then poly decay to 0, AdamW lr 6e-5, weight decay 0.01 as for Swin-T), no
# weight decay on norms and iRPE tables, SyncBN as in the Semantic FPN configs. The
# per-variant configs set the backbone's `arch` and checkpoint and the heads' `in_channels`.
# Layer-wise lr decay: see partialnet_mm/engine/optimizers.py.
_base_ = [
    './models/upernet_partialnet.py',
    './datasets/ade20k_checked.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './partialnet_mmseg_runtime.py',
]

crop_size = (512, 512)
num_classes = 150
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16
val_dataloader = dict(batch_size=1)
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
