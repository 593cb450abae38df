# UperNet with a PartialNet backbone: mmseg's UperNet with the ResNet-50 replaced (SyncBN, as
# mmseg's own configs). The values are PartialNet-T0's (so that this file builds on its own,
# as mmseg's base models are ResNet-50); a variant config sets its `arch`, its ImageNet
# checkpoint, the UPerHead's `in_channels` (the widths of the four stages,
# partialnet_mm.partialnet_channels) and the auxiliary FCN head's (stage 2's width, its
# in_index).
_base_ = ['mmseg::_base_/models/upernet_r50.py']

model = dict(
    pretrained=None,  # the base's ResNet weights; ours come through the backbone's init_cfg
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        arch='t0',
        out_indices=(0, 1, 2, 3),
        with_out_norm=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        # stochastic depth of the last block: the preset's ImageNet rate (T0's);
        # a variant writes its own
        drop_path_rate=0.,
        # the converted checkpoint holds a whole classifier: prefix picks the backbone
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t0_in1k.pth')),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
