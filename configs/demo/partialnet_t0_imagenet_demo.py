# The real PartialNet-T0 ImageNet config on the embedded ImageNet-layout demo data
# (python tools/make_demo_data.py writes it): swaps only data, sizes, schedule and classes,
# and trains in fp32 (the real recipe's AMP needs a GPU, and the demo runs on CPUs under any
# train.py, mmpretrain's own included).
_base_ = ['../partialnet_t0_imagenet.py']

data_root = 'data/imagenet_demo'
# alphabetical: with a folder layout, mmpretrain numbers the classes in folder order
classes = ('circle', 'rectangle', 'star', 'triangle')

# trains from random weights, as the real ImageNet recipe does.
# images are 80 px: train at 64 px, the last epochs at the 72 px test size (the recipe's
# 192 -> 224 px switch, scaled down); crops keep most of the image, since one cut-off shape
# corner can change what a shape looks like
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# the last 2 epochs at 72 px (SwitchRecipeHook, below)
final_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=72, crop_ratio_range=(0.6, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=80, edge='short', backend='pillow',
         interpolation='bicubic'),  # 72 / 0.9
    dict(type='CenterCrop', crop_size=72),
    dict(type='PackInputs'),
]
data_preprocessor = dict(num_classes=len(classes))
dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(batch_size=32, num_workers=1, persistent_workers=False,
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=50, num_workers=1, persistent_workers=False,
                      dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(topk=(1, ))
test_evaluator = val_evaluator
# Mixup/CutMix regularise 300-epoch runs; in a few minutes from scratch they only delay
# learning (the demo stays at chance for epochs with them), so the demo trains without
model = dict(head=dict(num_classes=len(classes), topk=(1, )), train_cfg=None)

# schedule: about 1500 iterations, a few minutes on a 2-core CPU. lr 5e-4: at the recipe's
# 0.004 x 32/4096 it barely moves in this time, at 2e-3 it stays at chance
max_epochs = 15
warmup_epochs = 1
lr = 5e-4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# fp32: the recipe's AMP wrapper autocasts to bfloat16 on the CPU, which most CPUs emulate
# slowly. The recipe's optimizer and paramwise settings in a plain OptimWrapper; _delete_
# keeps the base's AMP-only loss_scale from being merged back in.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(_base_.optim_wrapper.optimizer, lr=lr),
    paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-5,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='SwitchRecipeHook',
         schedule=[dict(action_epoch=max_epochs - 1, train_pipeline=final_train_pipeline)]),
    dict(type='RandomStateHook'),
    dict(type='NonFiniteLossHook'),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(max_keep_ckpts=1))
