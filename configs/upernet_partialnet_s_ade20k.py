_base_ = ['./_base_/upernet_partialnet_ade20k.py']

# PartialNet-S from its ImageNet weights; the UPerHead reads the widths of the
# four stages, the auxiliary FCN head that of stage 2 (its in_index)
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.1,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_s_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
