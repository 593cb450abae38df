# The real PartialNet-T0 Mask R-CNN config on the embedded demo data
# (python tools/make_demo_data.py writes it): swaps only data paths, image scale, schedule
# and class names.
_base_ = ['../mask_rcnn_partialnet_t0_coco.py', '../_base_/coco_demo_data.py']
from partialnet_mm.config_helpers import (demo_dataloaders,  # noqa: E402
                                          detection_demo_pipelines)

classes = _base_.demo_classes
train_pipeline, test_pipeline = detection_demo_pipelines(_base_.demo_image_scale, True)
train_dataloader, val_dataloader = demo_dataloaders(
    _base_.demo_dataset, _base_.demo_splits, train_pipeline, test_pipeline, 4, 4)
test_dataloader = val_dataloader
val_evaluator = _base_.demo_evaluator
test_evaluator = val_evaluator

model = dict(
    # starts from random weights: no ImageNet checkpoint is needed to try the demo.
    # tools/demo.py sets init_cfg to the backbone of the classification demo it trains first
    # (as the real configs start from ImageNet weights).
    backbone=dict(init_cfg=None),
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)), mask_head=dict(num_classes=len(classes))),
    # Proposal and RoI counts matched to 256-px images with at most 6 objects (the COCO
    # recipe samples 512 RoIs per image from 1000 proposals; on a CPU the RoI heads then
    # dominate training: 32 RoIs from 150 proposals train at about 2.6 s per batch of 4
    # where 64 from 300 took 4.6 s).
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=150),
                   rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

max_epochs = _base_.demo_schedule_epochs
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = _base_.demo_param_scheduler
optim_wrapper = dict(optimizer=dict(lr=5e-4))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
