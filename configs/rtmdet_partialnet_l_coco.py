# RTMDet with PartialNet-L on COCO: mmdet's fine-tune recipe for an ImageNet-pre-trained
# backbone (see _base_/rtmdet_partialnet_100e_coco.py). Stage 1-3 widths 320/640/1280 are those
# of RTMDet-x, whose neck and head sizes are used.
_base_ = ['./_base_/models/rtmdet_partialnet.py', './_base_/rtmdet_partialnet_100e_coco.py']

norm_cfg = dict(type='GN', num_groups=32)
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.3,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_l_in1k.pth')),
    neck=dict(in_channels=[320, 640, 1280], out_channels=320, num_csp_blocks=4,
              norm_cfg=norm_cfg),
    bbox_head=dict(in_channels=320, feat_channels=320, exp_on_reg=True, norm_cfg=norm_cfg))
