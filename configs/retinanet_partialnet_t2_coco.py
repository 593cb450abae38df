_base_ = ['./_base_/retinanet_partialnet_fpn_1x_coco.py']

# PartialNet-T2 from its ImageNet weights; the FPN reads the widths of stages 1-3
model = dict(
    backbone=dict(
        arch='t2',
        drop_path_rate=0.05,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t2_in1k.pth')),
    neck=dict(in_channels=[128, 256, 512]))
