# RTMDet-Ins with PartialNet-T2 on COCO: mmdet's fine-tune recipe for an ImageNet-pre-trained
# backbone (see _base_/rtmdet-ins_partialnet_100e_coco.py). Stage 1-3 widths 128/256/512 are those
# of RTMDet-s, whose neck and head sizes are used.
_base_ = ['./_base_/models/rtmdet-ins_partialnet.py', './_base_/rtmdet-ins_partialnet_100e_coco.py']

norm_cfg = dict(type='GN', num_groups=32)
model = dict(
    backbone=dict(
        arch='t2',
        drop_path_rate=0.05,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t2_in1k.pth')),
    neck=dict(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1,
              norm_cfg=norm_cfg),
    bbox_head=dict(in_channels=128, feat_channels=128, norm_cfg=norm_cfg))
