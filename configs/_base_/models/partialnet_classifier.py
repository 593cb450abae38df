# A PartialNet ImageNet classifier (mmpretrain's ImageClassifier): the backbone's last stage,
# without output norm, into the authors' head (global pooling, 1x1 conv to 1280, activation,
# linear). The values are PartialNet-T0's (so that this file builds on its own); a variant
# config sets `arch` in both the backbone and the head (whose input width and activation are
# the arch's), and its Mixup alpha.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='PartialNet', arch='t0', out_indices=(3, ), with_out_norm=False),
    neck=None,
    head=dict(
        type='PartialNetClsHead',
        arch='t0',
        num_classes=1000,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    # one of the two per batch, with equal probability (timm: mixup_switch_prob=0.5)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.1), dict(type='CutMix', alpha=1.0)]))
