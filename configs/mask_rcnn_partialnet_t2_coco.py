_base_ = ['./_base_/mask_rcnn_partialnet_fpn_1x_coco.py']
from partialnet_mm.config_helpers import fpn_detector  # noqa: E402  (after _base_: a plain config)

arch = 't2'
model = fpn_detector(arch, _base_.backbone_out_indices)
