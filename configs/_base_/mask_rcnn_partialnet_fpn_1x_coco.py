# Mask R-CNN + FPN, 1x schedule, COCO, with a PartialNet backbone: everything shared by the
# per-variant configs, which set `arch` and derive the rest from it.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    './partialnet_mmdet_runtime.py',
]

backbone_out_indices = _base_.partialnet_backbone.out_indices  # what the FPN reads
model = dict(backbone=_base_.partialnet_backbone)
optim_wrapper = _base_.partialnet_optim_wrapper
