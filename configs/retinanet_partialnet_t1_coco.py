_base_ = ['./_base_/retinanet_partialnet_fpn_1x_coco.py']

# PartialNet-T1 from its ImageNet weights; the FPN reads the widths of stages 1-3
model = dict(
    backbone=dict(
        arch='t1',
        drop_path_rate=0.02,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t1_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384]))
