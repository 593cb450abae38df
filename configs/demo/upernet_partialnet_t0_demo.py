# The real PartialNet-T0 UperNet config on the embedded ADE20K-layout demo data
# (python tools/make_demo_data.py writes it): swaps only data, sizes, schedule and classes.
_base_ = ['../upernet_partialnet_t0_ade20k.py']

data_root = 'data/ade20k_demo'
crop_size = (256, 256)
# BaseSegDataset in the ADE20K convention (ADE20KDataset accepts its 150 classes only)
metainfo = dict(
    classes=('background', 'circle', 'triangle', 'rectangle', 'star'),
    palette=[[120, 120, 120], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]])
# label maps with values outside the 5 classes stop training with the file named
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=5),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=5),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

model = dict(
    data_preprocessor=dict(size=crop_size),
    # starts from random weights: no ImageNet checkpoint is needed to try the demo
    backbone=dict(init_cfg=None),
    decode_head=dict(num_classes=5),
    auxiliary_head=dict(num_classes=5))

# schedule: a short run on a 2-core CPU (AdamW at the demo lr of the Semantic FPN demo)
max_iters = 200
warmup_iters = 30
lr = 5e-4
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
