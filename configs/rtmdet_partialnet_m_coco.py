# RTMDet with PartialNet-M on COCO: mmdet's fine-tune recipe for an ImageNet-pre-trained
# backbone (see _base_/rtmdet_partialnet_100e_coco.py). Stage 1-3 widths 256/512/1024 are those
# of RTMDet-l, whose neck and head sizes are used.
_base_ = ['./_base_/models/rtmdet_partialnet.py', './_base_/rtmdet_partialnet_100e_coco.py']

norm_cfg = dict(type='GN', num_groups=32)
model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_m_in1k.pth')),
    neck=dict(in_channels=[256, 512, 1024], out_channels=256, num_csp_blocks=3,
              norm_cfg=norm_cfg),
    bbox_head=dict(in_channels=256, feat_channels=256, exp_on_reg=True, norm_cfg=norm_cfg))
