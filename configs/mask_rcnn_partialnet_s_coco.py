_base_ = ['./_base_/mask_rcnn_partialnet_fpn_1x_coco.py']
from partialnet_mm import partialnet_channels  # noqa: E402  (after _base_: keeps this a plain config)

arch = 's'
model = dict(
    backbone=dict(
        arch=arch,
        # ImageNet weights: python tools/convert_checkpoint.py <authors' .pth> <this path>
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint=f'checkpoints/partialnet_{arch}_in1k.pth')),
    neck=dict(in_channels=partialnet_channels(arch)))
