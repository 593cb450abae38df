# The real PartialNet-T0 RetinaNet config on the embedded COCO-format demo data
# (python tools/make_demo_data.py writes it): swaps only data paths, image scales, schedule
# and class names.
_base_ = ['../retinanet_partialnet_t0_coco.py', '../_base_/coco_demo_data.py']
from partialnet_mm.config_helpers import (demo_dataloaders,  # noqa: E402
                                          detection_demo_pipelines, detection_tta_pipeline)

classes = _base_.demo_classes
image_scale = _base_.demo_image_scale
train_pipeline, test_pipeline = detection_demo_pipelines(image_scale, False)
train_dataloader, val_dataloader = demo_dataloaders(
    _base_.demo_dataset, _base_.demo_splits, train_pipeline, test_pipeline, 4, 4)
test_dataloader = val_dataloader
val_evaluator = _base_.demo_evaluator
test_evaluator = val_evaluator
# the real config's three scales and flips, at the demo's size
tta_pipeline = detection_tta_pipeline([image_scale, (192, 192), (384, 384)])

model = dict(
    # starts from random weights: no ImageNet checkpoint is needed to try the demo
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=len(classes)))

max_epochs = _base_.demo_schedule_epochs
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = _base_.demo_param_scheduler
optim_wrapper = dict(optimizer=dict(lr=5e-4))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
