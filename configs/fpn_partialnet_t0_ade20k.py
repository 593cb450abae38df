_base_ = ['./_base_/fpn_partialnet_ade20k.py']

# PartialNet-T0 from its ImageNet weights; the FPN reads the widths of the four stages
model = dict(
    backbone=dict(
        arch='t0',
        drop_path_rate=0.,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t0_in1k.pth')),
    neck=dict(in_channels=[32, 64, 128, 256]))
