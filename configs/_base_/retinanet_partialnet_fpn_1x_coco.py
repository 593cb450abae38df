# RetinaNet + FPN, 1x schedule, COCO, with a PartialNet backbone: everything shared by the
# per-variant configs, which set `arch` and derive the rest from it.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    './partialnet_mmdet_runtime.py',
]
from partialnet_mm.config_helpers import detection_tta_pipeline  # noqa: E402

# RetinaNet's pyramid starts at stride 8: the backbone returns stages 1-3 only and the FPN
# starts at its first input (as mmdet's Swin RetinaNet does). Returning stage 0 as well would
# leave its output norm without gradients, which distributed training refuses.
backbone_out_indices = (1, 2, 3)
model = dict(
    backbone=dict(_base_.partialnet_backbone, out_indices=backbone_out_indices),
    neck=dict(start_level=0))
optim_wrapper = _base_.partialnet_optim_wrapper

# test-time augmentation (mmdet's tools/test.py --tta, partialnet_mm.runner.enable_tta):
# three scales, each flipped and not, boxes merged by NMS (mmdet's retinanet_tta.py)
tta_model = dict(
    type='DetTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = detection_tta_pipeline([(1333, 800), (666, 400), (2000, 1200)])
