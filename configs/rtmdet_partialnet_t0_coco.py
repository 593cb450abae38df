# RTMDet with PartialNet-T0 on COCO: mmdet's fine-tune recipe for an ImageNet-pre-trained
# backbone (see _base_/rtmdet_partialnet_100e_coco.py). Stage 1-3 widths 64/128/256 are those
# of narrower than RTMDet-tiny; its neck depth (1 CSP block) is used, at the width of stage 1.
_base_ = ['./_base_/models/rtmdet_partialnet.py', './_base_/rtmdet_partialnet_100e_coco.py']

norm_cfg = dict(type='GN', num_groups=32)
model = dict(
    backbone=dict(
        arch='t0',
        drop_path_rate=0.,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t0_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256], out_channels=64, num_csp_blocks=1,
              norm_cfg=norm_cfg),
    bbox_head=dict(in_channels=64, feat_channels=64, exp_on_reg=False, norm_cfg=norm_cfg))
