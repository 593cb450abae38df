# The real PartialNet-T0 Semantic FPN config on the embedded ADE20K-layout demo data
# (python tools/make_demo_data.py writes it): swaps only data, sizes, schedule and classes.
_base_ = ['../fpn_partialnet_t0_ade20k.py', '../_base_/ade20k_demo_data.py']
from partialnet_mm.config_helpers import demo_dataloaders  # noqa: E402

classes = _base_.demo_classes
crop_size = _base_.demo_crop_size
train_dataloader, val_dataloader = demo_dataloaders(
    _base_.demo_dataset, _base_.demo_splits, _base_.demo_train_pipeline,
    _base_.demo_test_pipeline, 8, 1)
test_dataloader = val_dataloader

model = dict(
    data_preprocessor=dict(size=crop_size),
    # starts from random weights; tools/learning_benchmark.py sets init_cfg to the backbone
    # of the classification demo it trains first
    backbone=dict(init_cfg=None),
    decode_head=dict(num_classes=len(classes)))

# schedule: 35-60 minutes on 2 CPU cores (tools/learning_benchmark.py seg; README)
max_iters = 1000
lr = _base_.demo_lr
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=30, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
