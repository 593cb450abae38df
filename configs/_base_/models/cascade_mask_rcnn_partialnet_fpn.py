# Cascade Mask R-CNN + FPN with a PartialNet backbone: mmdet's Cascade Mask R-CNN with the
# ResNet-50 replaced. The values are PartialNet-T0's (so that this file builds on its own, as
# mmdet's base models are ResNet-50); a variant config sets its `arch`, its ImageNet
# checkpoint (`python tools/convert_checkpoint.py <authors' .pth> <path>` writes it) and the
# FPN's `in_channels`: the widths of the returned stages (partialnet_mm.partialnet_channels).
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        arch='t0',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        with_out_norm=True,
        norm_cfg=dict(type='BN', requires_grad=True),
        # stochastic depth of the last block: the preset's ImageNet rate (T0's);
        # a variant writes its own
        drop_path_rate=0.,
        # the converted checkpoint holds a whole classifier: prefix picks the backbone
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t0_in1k.pth')),
    neck=dict(in_channels=[32, 64, 128, 256]))
