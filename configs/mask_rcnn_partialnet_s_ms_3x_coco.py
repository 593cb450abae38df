_base_ = ['./_base_/mask_rcnn_partialnet_fpn_ms_3x_coco.py']

# PartialNet-S from its ImageNet weights; the FPN reads the widths of the four stages
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.1,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_s_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
