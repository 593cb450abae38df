_base_ = ['./_base_/partialnet_imagenet.py']

# The authors' recipe for PartialNet-L (drop path: the arch's own rate).
model = dict(
    backbone=dict(arch='l'),
    head=dict(arch='l'),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.7), dict(type='CutMix', alpha=1.0)]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05), clip_grad=dict(max_norm=0.01))
# RandAugment before PackInputs, in the 192-px pipeline and in the 224-px one of the
# last 20 epochs, which the SwitchRecipeHook (written again here) trains with
rand_augment = dict(_base_.rand_augment, magnitude_level=7)
train_pipeline = [*_base_.train_pipeline[:-1], rand_augment, _base_.train_pipeline[-1]]
final_train_pipeline = [*_base_.final_train_pipeline[:-1], rand_augment,
                        _base_.final_train_pipeline[-1]]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    dict(type='SwitchRecipeHook',
         schedule=[dict(action_epoch=281, train_pipeline=final_train_pipeline)]),
    dict(type='RandomStateHook'),
    dict(type='NonFiniteLossHook'),
]
