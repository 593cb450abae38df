# COCO instance segmentation, 3x schedule with multi-scale training, for PartialNet detectors:
# the recipe of mmdet's Swin / ConvNeXt "ms-crop-3x" configs (DETR-style augmentation: random
# short side 480-800, or a 384-600 crop of a 400-600 image first; 36 epochs, steps at 27 and
# 33) with the authors' AdamW (schedules/adamw_1x_coco.py). Used by the Mask R-CNN and
# Cascade Mask R-CNN 3x bases, which add the model.
#
# Mixed precision: `tools/train.py CONFIG --amp` switches optim_wrapper to AMP with a dynamic
# loss scale, as mmdet's ConvNeXt "amp-ms-crop-3x" configs train (ours: mmengine's
# AmpOptimWrapper on a GPU, bfloat16 autocast on the CPU; mmdet's own tool: AmpOptimWrapper,
# GPU only).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    './schedules/adamw_1x_coco.py',
    './partialnet_mmdet_runtime.py',
]

# short sides of the multi-scale training images (long side at most 1333)
ms_short_sides = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=[(s, 1333) for s in ms_short_sides],
                  keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=[(s, 1333) for s in ms_short_sides],
                     keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]
