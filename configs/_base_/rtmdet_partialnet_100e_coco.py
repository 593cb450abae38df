# RTMDet with a PartialNet backbone on COCO: the data, schedule and hooks every per-variant
# config shares. mmdet's recipe for an RTMDet with an ImageNet-pre-trained foreign backbone
# (rtmdet_l_convnext_b_4xb32-100e_coco.py, rtmdet_l_swin_b_4xb32-100e_coco.py): 100 epochs
# at lr 0.001 (RTMDet from scratch: 300 at 0.004), the last 10 without Mosaic and MixUp
# (PipelineSwitchHook), EMA weights; 4 GPUs x 32 images. The model comes from
# ./models/rtmdet_partialnet.py, which per-variant configs list beside this file.
_base_ = [
    'mmdet::_base_/default_runtime.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::rtmdet/rtmdet_tta.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

image_size = (640, 640)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CachedMosaic', img_scale=image_size, pad_val=114.0),
    dict(type='RandomResize', scale=(1280, 1280), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=image_size, ratio_range=(1.0, 1.0),
         max_cached_images=20, pad_val=(114, 114, 114)),
    dict(type='PackDetInputs'),
]
# the last epochs: no Mosaic, no MixUp
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=10,
    batch_sampler=None,
    pin_memory=True,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=5, num_workers=10, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(proposal_nums=(100, 1, 10))
test_evaluator = val_evaluator

max_epochs = 100
stage2_num_epochs = 10
interval = 10
base_lr = 0.001
train_cfg = dict(
    max_epochs=max_epochs,
    val_interval=interval,
    dynamic_intervals=[(max_epochs - stage2_num_epochs, 1)])

# AdamW as RTMDet; no weight decay on norms, biases and PartialNet's iRPE tables
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0,
        bias_decay_mult=0,
        bypass_duplicate=True,
        custom_keys={'.bias_table': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=1000),
    # cosine from the middle of training to the end
    dict(
        type='CosineAnnealingLR',
        eta_min=base_lr * 0.05,
        begin=max_epochs // 2,
        end=max_epochs,
        T_max=max_epochs // 2,
        by_epoch=True,
        convert_to_iter_based=True),
]

# checkpoints written atomically (a crash or a full disk never breaks the last good one)
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', interval=interval, max_keep_ckpts=3))
# EMA and the pipeline switch as mmdet's RTMDets; then the project's hooks: resumed runs draw
# the same random numbers (RandomStateHook), a NaN/inf loss stops training clearly
# (NonFiniteLossHook)
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_num_epochs,
         switch_pipeline=train_pipeline_stage2),
    dict(type='RandomStateHook'),
    dict(type='NonFiniteLossHook'),
]
