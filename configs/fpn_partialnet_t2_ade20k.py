_base_ = ['./_base_/fpn_partialnet_ade20k.py']
from partialnet_mm import partialnet_channels  # noqa: E402  (after _base_: keeps this a plain config)

arch = 't2'
model = dict(
    backbone=dict(
        arch=arch,
        # ImageNet weights: python tools/convert_checkpoint.py <authors' .pth> <this path>
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint=f'checkpoints/partialnet_{arch}_in1k.pth')),
    neck=dict(in_channels=partialnet_channels(arch)))
