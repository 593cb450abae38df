_base_ = ['./_base_/mask_rcnn_partialnet_fpn_ms_3x_coco.py']

# PartialNet-T1 from its ImageNet weights; the FPN reads the widths of the four stages
model = dict(
    backbone=dict(
        arch='t1',
        drop_path_rate=0.02,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t1_in1k.pth')),
    neck=dict(in_channels=[48, 96, 192, 384]))
