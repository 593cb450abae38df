_base_ = ['./_base_/cascade_mask_rcnn_partialnet_fpn_ms_3x_coco.py']

# PartialNet-L from its ImageNet weights; the FPN reads the widths of the four stages
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.3,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_l_in1k.pth')),
    neck=dict(in_channels=[160, 320, 640, 1280]))
