# The real PartialNet-T0 UperNet config on the embedded ADE20K-layout demo data
# (python tools/make_demo_data.py writes it): swaps only data, sizes, schedule and classes.
_base_ = ['../upernet_partialnet_t0_ade20k.py', '../_base_/ade20k_demo_data.py']
from partialnet_mm.config_helpers import demo_dataloaders  # noqa: E402

classes = _base_.demo_classes
crop_size = _base_.demo_crop_size
train_dataloader, val_dataloader = demo_dataloaders(
    _base_.demo_dataset, _base_.demo_splits, _base_.demo_train_pipeline,
    _base_.demo_test_pipeline, 8, 1)
test_dataloader = val_dataloader

model = dict(
    data_preprocessor=dict(size=crop_size),
    # starts from random weights: no ImageNet checkpoint is needed to try the demo
    backbone=dict(init_cfg=None),
    decode_head=dict(num_classes=len(classes)),
    auxiliary_head=dict(num_classes=len(classes)))

# schedule: a short run on a 2-core CPU (AdamW at the demo lr of the Semantic FPN demo)
max_iters = 200
warmup_iters = 30
lr = _base_.demo_lr
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
