"""Small functions the configs call, so that a fact derived from another is written once."""
import copy
from typing import List


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
