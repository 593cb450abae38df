# RTMDet-Ins with a PartialNet backbone: RTMDet's model (./rtmdet_partialnet.py) with mmdet's
# instance head (rtmdet-ins_l_8xb32-300e_coco.py). Shown for PartialNet-T0, whose neck is
# 64 channels wide; per-variant configs restate the widths.
_base_ = ['./rtmdet_partialnet.py']
model = dict(
    bbox_head=dict(
        _delete_=True,
        type='RTMDetInsSepBNHead',
        num_classes=80,
        in_channels=64,
        stacked_convs=2,
        share_conv=True,
        pred_kernel_size=1,
        feat_channels=64,
        act_cfg=dict(type='SiLU', inplace=True),
        norm_cfg=dict(type='GN', num_groups=32),
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_mask=dict(type='DiceLoss', loss_weight=2.0, eps=5e-6, reduction='mean')),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100,
        mask_thr_binary=0.5))
