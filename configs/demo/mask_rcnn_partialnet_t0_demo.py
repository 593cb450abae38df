# The real PartialNet-T0 Mask R-CNN config on the embedded COCO-format demo data
# (python tools/make_demo_data.py writes it): swaps only data paths, image scale, schedule
# and class names.
_base_ = ['../mask_rcnn_partialnet_t0_coco.py']

data_root = 'data/coco_demo/'
metainfo = dict(classes=('circle', 'triangle', 'rectangle', 'star'))
image_scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/')))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline,
                 ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

model = dict(
    # starts from random weights: no ImageNet checkpoint is needed to try the demo.
    # tools/demo.py sets init_cfg to the backbone of the classification demo it trains first
    # (as the real configs start from ImageNet weights).
    backbone=dict(init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=4), mask_head=dict(num_classes=4)),
    # Proposal and RoI counts matched to 256-px images with at most 6 objects (the COCO
    # recipe samples 512 RoIs per image from 1000 proposals; on a CPU the RoI heads then
    # dominate training: 32 RoIs from 150 proposals train at about 2.6 s per batch of 4
    # where 64 from 300 took 4.6 s).
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=150),
                   rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

# schedule: about 20 minutes on a 2-core CPU
max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[max_epochs - 1], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=5e-4))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
