# Mask R-CNN + FPN, 3x schedule with multi-scale training (partialnet_coco_instance_ms_3x.py),
# COCO, with a PartialNet backbone: everything the per-variant configs share. They set the
# backbone's `arch` and checkpoint and the FPN's `in_channels`.
_base_ = [
    './models/mask_rcnn_partialnet_fpn.py',
    './partialnet_coco_instance_ms_3x.py',
]
