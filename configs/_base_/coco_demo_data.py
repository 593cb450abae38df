# The embedded COCO-format demo set (python tools/make_demo_data.py writes it), for the
# detection demo configs; names start with `demo_` because a config's bases may not share keys.
demo_data_root = 'data/coco_demo/'
demo_classes = ('circle', 'triangle', 'rectangle', 'star')
demo_image_scale = (256, 256)
demo_schedule_epochs = 8  # about 20 minutes on a 2-core CPU (Mask R-CNN T0)
demo_dataset = dict(data_root=demo_data_root, metainfo=dict(classes=demo_classes))
demo_splits = dict(
    train=dict(ann_file='annotations/instances_train2017.json',
               data_prefix=dict(img='train2017/')),
    val=dict(ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/')))
demo_evaluator = dict(ann_file=demo_data_root + 'annotations/instances_val2017.json')
demo_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=demo_schedule_epochs, by_epoch=True,
         milestones=[demo_schedule_epochs - 1], gamma=0.1),
]
