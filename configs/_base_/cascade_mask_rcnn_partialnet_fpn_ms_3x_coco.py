# Cascade Mask R-CNN + FPN, 3x schedule with multi-scale training
# (partialnet_coco_instance_ms_3x.py, which also says how to train it with AMP), COCO, with a
# PartialNet backbone: shared by the per-variant configs, which set `arch`.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './partialnet_coco_instance_ms_3x.py',
]

backbone_out_indices = _base_.partialnet_backbone.out_indices  # what the FPN reads
model = dict(backbone=_base_.partialnet_backbone)
