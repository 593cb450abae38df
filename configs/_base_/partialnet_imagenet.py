# ImageNet-1k classification with PartialNet: the authors' recipe shared by every variant.
# 300 epochs, AdamW, lr 0.004 per 4096 images, 20 warm-up epochs from 1e-6, cosine to 1e-5,
# label smoothing 0.1, Mixup/CutMix (switch prob 0.5), bicubic, 192 px crops for the first
# 280 epochs then 224, test 224/0.9 resize + 224 center crop, AMP.
# Per-variant configs set arch, weight decay, grad clip, mixup alpha and RandAugment.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
from partialnet_mm.config_helpers import imagenet_hooks  # noqa: E402

model = dict(
    type='ImageClassifier',
    backbone=dict(type='PartialNet', out_indices=(3, ), with_out_norm=False),
    neck=None,
    head=dict(
        type='PartialNetClsHead',
        num_classes=1000,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    # one of the two per batch, with equal probability (timm: mixup_switch_prob=0.5);
    # variants set the Mixup alpha
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.1), dict(type='CutMix', alpha=1.0)]))
cutmix = dict(type='CutMix', alpha=1.0)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=192, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# RandAugment of the variants that use it (inserted before PackInputs; magnitude per variant)
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
optim_wrapper = dict(
    type='AmpOptimWrapper',
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
# the last 20 epochs at 224 px (mmpretrain's SwitchRecipeHook; epochs counted from 1); each
# variant passes its own train_pipeline to imagenet_hooks
final_crop_epoch, final_crop = 281, 224
custom_hooks = imagenet_hooks(train_pipeline, final_crop_epoch, final_crop)
# checkpoints written atomically (a crash or a full disk never breaks the last good one)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
