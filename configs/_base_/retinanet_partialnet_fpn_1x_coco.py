# RetinaNet + FPN, 1x schedule, COCO, with a PartialNet backbone: everything the per-variant
# configs share. They set the backbone's `arch` and checkpoint and the FPN's `in_channels`.
_base_ = [
    './models/retinanet_partialnet_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './schedules/adamw_1x_coco.py',
    './partialnet_mmdet_runtime.py',
]

# test-time augmentation (mmdet's tools/test.py --tta, partialnet_mm.runner.enable_tta):
# three scales, each flipped and not, boxes merged by NMS (mmdet's retinanet_tta.py). The
# flip / flip_direction meta keys are what DetTTAModel reads to flip a flipped view's boxes
# back before merging them.
tta_model = dict(
    type='DetTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_scales = [(1333, 800), (666, 400), (2000, 1200)]  # (width, height), keeping the ratio
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=s, keep_ratio=True) for s in tta_scales],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [dict(type='PackDetInputs',
                  meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                             'flip', 'flip_direction'))],
        ]),
]
