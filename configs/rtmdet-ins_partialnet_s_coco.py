# RTMDet-Ins with PartialNet-S on COCO: mmdet's fine-tune recipe for an ImageNet-pre-trained
# backbone (see _base_/rtmdet-ins_partialnet_100e_coco.py). Stage 1-3 widths 192/384/768 are those
# of RTMDet-m, whose neck and head sizes are used.
_base_ = ['./_base_/models/rtmdet-ins_partialnet.py', './_base_/rtmdet-ins_partialnet_100e_coco.py']

norm_cfg = dict(type='GN', num_groups=32)
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.1,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_s_in1k.pth')),
    neck=dict(in_channels=[192, 384, 768], out_channels=192, num_csp_blocks=2,
              norm_cfg=norm_cfg),
    bbox_head=dict(in_channels=192, feat_channels=192, norm_cfg=norm_cfg))
