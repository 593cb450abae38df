"""Small functions the configs call, so that a fact derived from another is written once."""
import copy
from typing import List, Sequence, Tuple

from .models.archs import partialnet_channels


def project_hooks() -> List[dict]:
    """The project's hooks every training config adds to ``custom_hooks``: a resumed run draws
    the same random numbers as an uninterrupted one (``RandomStateHook``); a NaN/inf loss
    stops training with a clear message before anything broken is saved
    (``NonFiniteLossHook``)."""
    return [dict(type='RandomStateHook'), dict(type='NonFiniteLossHook')]


def final_crop_recipe(train_pipeline: List[dict], action_epoch: int, scale: int) -> dict:
    """mmpretrain's ``SwitchRecipeHook`` that trains at ``scale`` from ``action_epoch`` on.

    The new pipeline is ``train_pipeline`` with every ``RandomResizedCrop`` producing
    ``scale`` x ``scale`` crops (the authors' 192 -> 224 px switch for the last epochs).
    ``action_epoch`` counts from 1, as the hook does: 281 switches before the 281st epoch.
    """
    pipeline = copy.deepcopy(list(train_pipeline))
    crops = [t for t in pipeline if t.get('type') == 'RandomResizedCrop']
    if not crops:
        raise ValueError('final_crop_recipe: the training pipeline has no RandomResizedCrop')
    for crop in crops:
        crop['scale'] = scale
    return dict(type='SwitchRecipeHook',
                schedule=[dict(action_epoch=action_epoch, train_pipeline=pipeline)])


def imagenet_hooks(train_pipeline: List[dict], action_epoch: int, scale: int) -> List[dict]:
    """``custom_hooks`` of a classification config: the final crop switch and
    :func:`project_hooks`."""
    return [final_crop_recipe(train_pipeline, action_epoch, scale), *project_hooks()]


def with_label_check(pipeline: List[dict], num_classes: int) -> List[dict]:
    """A segmentation pipeline with ``CheckSegLabels`` after its ``LoadAnnotations``: a label
    map with values outside the classes stops training with the file named."""
    checked = []
    for transform in copy.deepcopy(list(pipeline)):
        checked.append(transform)
        if transform.get('type') == 'LoadAnnotations':
            checked.append(dict(type='CheckSegLabels', num_classes=num_classes))
    if len(checked) == len(pipeline):
        raise ValueError('with_label_check: the pipeline has no LoadAnnotations')
    return checked


# keys only mmengine's AmpOptimWrapper takes
AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def fp32_optim_wrapper(optim_wrapper: dict) -> dict:
    """``optim_wrapper`` without mixed precision, replacing the inherited one.

    For configs that must also train without a GPU (the demos), where mmengine refuses
    ``AmpOptimWrapper`` ("only available training on gpu"): the same optimizer and
    paramwise settings in a plain ``OptimWrapper``. ``_delete_`` keeps the base's AMP-only
    keys (``loss_scale``) from being merged back in.
    """
    plain = {k: copy.deepcopy(v) for k, v in optim_wrapper.items()
             if k not in AMP_ONLY_KEYS and k != '_delete_'}
    return dict(plain, type='OptimWrapper', _delete_=True)


# ---------------------------------------------------------------------------- per-variant models
# Where every dense-prediction config expects the variant's ImageNet weights (written by
# `python tools/convert_checkpoint.py <authors' .pth> <this path>`).
PRETRAINED_CHECKPOINT = 'checkpoints/partialnet_{arch}_in1k.pth'
ALL_STAGES = (0, 1, 2, 3)


def pretrained_backbone(arch: str) -> dict:
    """The per-variant part of a dense-prediction backbone: ``arch`` and its ImageNet weights.

    The converted checkpoint holds a whole classifier (``backbone.*``, ``head.*``); the
    ``prefix`` picks the backbone out of it.
    """
    return dict(arch=arch,
                init_cfg=dict(type='Pretrained', prefix='backbone.',
                              checkpoint=PRETRAINED_CHECKPOINT.format(arch=arch)))


def fpn_detector(arch: str, out_indices: Sequence[int] = ALL_STAGES) -> dict:
    """``model`` overrides of a per-variant detector config with an FPN neck.

    ``out_indices`` are the stages the family's base config makes the backbone return (its
    ``backbone_out_indices``); the neck's ``in_channels`` are their widths.
    """
    return dict(backbone=pretrained_backbone(arch),
                neck=dict(in_channels=partialnet_channels(arch, out_indices)))


def upernet_segmentor(arch: str, auxiliary_index: int = 2) -> dict:
    """``model`` overrides of a per-variant UperNet config: the UPerHead reads all four
    stages, the auxiliary FCN head stage ``auxiliary_index`` (mmseg's ``in_index=2``)."""
    channels = partialnet_channels(arch, ALL_STAGES)
    return dict(backbone=pretrained_backbone(arch),
                decode_head=dict(in_channels=channels),
                auxiliary_head=dict(in_channels=channels[auxiliary_index]))


def detection_tta_pipeline(scales: Sequence[Tuple[int, int]]) -> List[dict]:
    """mmdet's test-time augmentation pipeline: every scale in ``scales`` (``(w, h)``,
    resized keeping the aspect ratio), each flipped and not, merged by ``DetTTAModel``.

    The ``flip``/``flip_direction`` meta keys are what ``DetTTAModel`` reads to flip the
    boxes of a flipped view back before merging them.
    """
    if not scales:
        raise ValueError('detection_tta_pipeline: give at least one (width, height) scale')
    return [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='TestTimeAug',
             transforms=[
                 [dict(type='Resize', scale=tuple(s), keep_ratio=True) for s in scales],
                 [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                 [dict(type='LoadAnnotations', with_bbox=True)],
                 [dict(type='PackDetInputs',
                       meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                  'scale_factor', 'flip', 'flip_direction'))],
             ]),
    ]


def detection_demo_pipelines(image_scale: Tuple[int, int],
                             with_mask: bool) -> Tuple[List[dict], List[dict]]:
    """``(train_pipeline, test_pipeline)`` of a detection demo config: load, resize keeping
    the aspect ratio (and flip in training), pack; masks with ``with_mask``."""
    annotations = dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask)
    train = [dict(type='LoadImageFromFile', backend_args=None), annotations,
             dict(type='Resize', scale=image_scale, keep_ratio=True),
             dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
    test = [dict(type='LoadImageFromFile', backend_args=None),
            dict(type='Resize', scale=image_scale, keep_ratio=True), copy.deepcopy(annotations),
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    return train, test


def demo_dataloaders(dataset: dict, splits: dict, train_pipeline: List[dict],
                     test_pipeline: List[dict], train_batch: int,
                     val_batch: int) -> Tuple[dict, dict]:
    """``(train_dataloader, val_dataloader)`` of a demo config: one worker each, the demo
    dataset with its ``train`` / ``val`` split."""
    def loader(split, pipeline, batch_size):
        return dict(batch_size=batch_size, num_workers=1,
                    dataset=dict(**copy.deepcopy(dataset), **copy.deepcopy(splits[split]),
                                 pipeline=pipeline))

    return (loader('train', train_pipeline, train_batch),
            loader('val', test_pipeline, val_batch))
