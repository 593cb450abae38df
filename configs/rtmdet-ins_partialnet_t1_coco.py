# RTMDet-Ins with PartialNet-T1 on COCO: mmdet's fine-tune recipe for an ImageNet-pre-trained
# backbone (see _base_/rtmdet-ins_partialnet_100e_coco.py). Stage 1-3 widths 96/192/384 are those
# of RTMDet-tiny, whose neck and head sizes are used.
_base_ = ['./_base_/models/rtmdet-ins_partialnet.py', './_base_/rtmdet-ins_partialnet_100e_coco.py']

# 32 groups cannot split the 48-channel halves of a 96-wide CSP layer
norm_cfg = dict(type='GN', num_groups=16)
model = dict(
    backbone=dict(
        arch='t1',
        drop_path_rate=0.02,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t1_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1,
              norm_cfg=norm_cfg),
    bbox_head=dict(in_channels=96, feat_channels=96, norm_cfg=norm_cfg))
