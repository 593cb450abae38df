# The embedded ADE20K-layout demo set (python tools/make_demo_data.py writes it), for the
# segmentation demo configs; names start with `demo_` because a config's bases may not share
# keys. BaseSegDataset in the ADE20K convention (ADE20KDataset accepts its 150 classes only).
demo_classes = ('background', 'circle', 'triangle', 'rectangle', 'star')
demo_crop_size = (256, 256)
demo_dataset = dict(
    type='BaseSegDataset', data_root='data/ade20k_demo', img_suffix='.jpg',
    seg_map_suffix='.png', reduce_zero_label=True,
    metainfo=dict(classes=demo_classes,
                  palette=[[120, 120, 120], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                           [255, 255, 0]]))
demo_splits = dict(
    train=dict(data_prefix=dict(img_path='images/training',
                                seg_map_path='annotations/training')),
    val=dict(data_prefix=dict(img_path='images/validation',
                              seg_map_path='annotations/validation')))
# label maps with values outside the classes stop training with the file named
demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=len(demo_classes)),
    dict(type='RandomResize', scale=demo_crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=demo_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
demo_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=demo_crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=len(demo_classes)),
    dict(type='PackSegInputs'),
]
demo_lr = 5e-4  # AdamW, as the other demos
