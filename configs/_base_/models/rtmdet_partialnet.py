# RTMDet with a PartialNet backbone: the model only (mmdet's rtmdet_l_convnext_b and
# rtmdet_l_swin_b configs are the pattern). Shown for PartialNet-T0; every per-variant config
# restates what depends on the arch: `arch`, its checkpoint, the neck and head widths.
norm_cfg = dict(type='GN', num_groups=32)  # neck and head, as mmdet's foreign-backbone RTMDets
model = dict(
    type='RTMDet',
    # ImageNet RGB statistics: the backbone was pre-trained on RGB images
    # (CSPNeXt's BGR ones belong to its own pre-training)
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        batch_augments=None),
    # RTMDet's pyramid starts at stride 8: stages 1-3 (returning stage 0 as well would leave
    # its output norm without gradients, which distributed training refuses)
    backbone=dict(
        type='PartialNet',
        arch='t0',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        with_out_norm=True,
        norm_cfg=dict(type='BN', requires_grad=True),
        # stochastic depth of the last block: the preset's ImageNet rate (T0's);
        # a variant writes its own
        drop_path_rate=0.,
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t0_in1k.pth')),
    # in_channels: the arch's stage 1-3 widths (partialnet_mm.partialnet_channels);
    # out_channels: the stride-8 width, as every RTMDet size has it (tiny 96 ... x 320);
    # num_csp_blocks: that of the RTMDet size of the same widths (1 for tiny and s)
    neck=dict(
        type='CSPNeXtPAFPN',
        in_channels=[64, 128, 256],
        out_channels=64,
        num_csp_blocks=1,
        expand_ratio=0.5,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='SiLU', inplace=True)),
    bbox_head=dict(
        type='RTMDetSepBNHead',
        num_classes=80,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        with_objectness=False,
        exp_on_reg=False,  # as RTMDet tiny and s; m, l and x regress through exp()
        share_conv=True,
        pred_kernel_size=1,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='SiLU', inplace=True)),
    train_cfg=dict(
        assigner=dict(type='DynamicSoftLabelAssigner', topk=13),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=30000,
        min_bbox_size=0,
        score_thr=0.001,
        nms=dict(type='nms', iou_threshold=0.65),
        max_per_img=300))
