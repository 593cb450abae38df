# ImageNet-1k classification with PartialNet: the authors' recipe shared by every variant.
# 300 epochs, AdamW, lr 0.004 per 4096 images, 20 warm-up epochs from 1e-6, cosine to 1e-5,
# label smoothing 0.1, Mixup/CutMix (switch prob 0.5), bicubic, 192 px crops for the first
# 280 epochs then 224, test 224/0.9 resize + 224 center crop, AMP.
# Per-variant configs set arch, weight decay, grad clip, mixup alpha and RandAugment.
_base_ = [
    './models/partialnet_classifier.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=192, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# the pipeline of the last 20 epochs: the same at 224 px (SwitchRecipeHook, below)
final_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# RandAugment of the variants that use it (inserted before PackInputs of both pipelines;
# magnitude per variant)
rand_augment = dict(
    type='RandAugment',
    policies='timm_increasing',
    num_policies=2,
    total_level=10,
    magnitude_level=7,
    magnitude_std=0.5,
    hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic'))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow',
         interpolation='bicubic'),  # 224 / 0.9
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=256, num_workers=8,
                        dataset=dict(pipeline=train_pipeline))  # x 16 GPUs = 4096
val_dataloader = dict(batch_size=256, num_workers=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 300
warmup_epochs = 20
# mmengine's AmpOptimWrapper on a GPU; on a machine without one (where mmengine's refuses to
# be built) bfloat16 autocast, so the recipe also runs as written on the CPU.
optim_wrapper = dict(
    type='AnyDeviceAmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=0.004, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                       custom_keys={'.bias_table': dict(decay_mult=0.)}))  # no grad clip
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 0.004, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-5,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=4096)
# The last 20 epochs train on final_train_pipeline (mmpretrain's SwitchRecipeHook; epochs
# counted from 1, so 281 switches before the 281st). A variant that changes its pipelines
# writes this list again with its own final_train_pipeline (tests/test_config_consistency.py
# checks that the two pipelines differ only in the crop size). Then the project's hooks:
# resumed runs draw the same random numbers; a NaN/inf loss stops training clearly.
custom_hooks = [
    dict(type='SwitchRecipeHook',
         schedule=[dict(action_epoch=281, train_pipeline=final_train_pipeline)]),
    dict(type='RandomStateHook'),
    dict(type='NonFiniteLossHook'),
]
# checkpoints written atomically (a crash or a full disk never breaks the last good one)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
