_base_ = ['./_base_/partialnet_imagenet.py']
from partialnet_mm.config_helpers import imagenet_hooks  # noqa: E402

arch = 't2'
# The authors' recipe for this variant (drop path: the arch's own rate).
model = dict(
    backbone=dict(arch=arch),
    head=dict(arch=arch),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.1), _base_.cutmix]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.02))
train_pipeline = [*_base_.train_pipeline[:-1],
                  dict(_base_.rand_augment, magnitude_level=5),
                  _base_.train_pipeline[-1]]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = imagenet_hooks(train_pipeline, _base_.final_crop_epoch, _base_.final_crop)
