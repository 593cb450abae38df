# Mask R-CNN + FPN, 1x schedule, COCO, with a PartialNet backbone: everything the per-variant
# configs share. They set the backbone's `arch` and checkpoint and the FPN's `in_channels`.
_base_ = [
    './models/mask_rcnn_partialnet_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './schedules/adamw_1x_coco.py',
    './partialnet_mmdet_runtime.py',
]
