_base_ = ['./_base_/partialnet_imagenet.py']

arch = 't0'
# The authors' recipe for this variant (drop path: the arch's own rate).
model = dict(
    backbone=dict(arch=arch),
    head=dict(arch=arch),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.05), _base_.cutmix]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.005))
