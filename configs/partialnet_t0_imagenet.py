_base_ = ['./_base_/partialnet_imagenet.py']

# The authors' recipe for PartialNet-T0 (drop path: the arch's own rate).
model = dict(
    backbone=dict(arch='t0'),
    head=dict(arch='t0'),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.05), dict(type='CutMix', alpha=1.0)]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.005))
