_base_ = ['./_base_/cascade_mask_rcnn_partialnet_fpn_ms_3x_coco.py']
from partialnet_mm.config_helpers import fpn_detector  # noqa: E402  (after _base_: a plain config)

arch = 't1'
model = fpn_detector(arch, _base_.backbone_out_indices)
