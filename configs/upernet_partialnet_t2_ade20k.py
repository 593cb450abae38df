_base_ = ['./_base_/upernet_partialnet_ade20k.py']

# PartialNet-T2 from its ImageNet weights; the UPerHead reads the widths of the
# four stages, the auxiliary FCN head that of stage 2 (its in_index)
model = dict(
    backbone=dict(
        arch='t2',
        drop_path_rate=0.05,  # stochastic depth: the preset's ImageNet rate
        init_cfg=dict(type='PartialNetPretrained', prefix='backbone.',
                      checkpoint='checkpoints/partialnet_t2_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
