# RTMDet-Ins with a PartialNet backbone on COCO: RTMDet's recipe (./rtmdet_partialnet_100e_coco.py)
# with masks in the pipelines and the evaluator, as mmdet's rtmdet-ins_l_8xb32-300e_coco.py.
# The model comes from ./models/rtmdet-ins_partialnet.py.
_base_ = ['./rtmdet_partialnet_100e_coco.py']

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='CachedMosaic', img_scale=_base_.image_size, pad_val=114.0),
    dict(type='RandomResize', scale=(1280, 1280), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=_base_.image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=_base_.image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=_base_.image_size, ratio_range=(1.0, 1.0),
         max_cached_images=20, pad_val=(114, 114, 114)),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)),
    dict(type='PackDetInputs'),
]
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='RandomResize', scale=_base_.image_size, ratio_range=(0.1, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=_base_.image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=_base_.image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
    dict(type='PipelineSwitchHook',
         switch_epoch=_base_.max_epochs - _base_.stage2_num_epochs,
         switch_pipeline=train_pipeline_stage2),
    dict(type='RandomStateHook'),
    dict(type='NonFiniteLossHook'),
]
