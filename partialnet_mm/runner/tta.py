"""Test-time augmentation: what mmdet's and mmseg's ``tools/test.py --tta`` do to a config.

Both libraries' test tools wrap the config's model in its ``tta_model`` (``DetTTAModel``,
``SegTTAModel``: run every augmented view, merge the predictions) and give the test dataset
the ``tta_pipeline`` (``TestTimeAug``: one packed sample per view). :func:`enable_tta` does
the same, so our ``tools/test.py --tta``, a notebook or a test can build a Runner from the
result::

    from partialnet_mm.runner.tta import enable_tta
    cfg = enable_tta(Config.fromfile('configs/retinanet_partialnet_t0_coco.py'))
    Runner.from_cfg(cfg).test()

Unlike mmdet's tool, a config without TTA settings is an error here, not a silent default:
the views (scales, flips) belong in the config, where they are reviewed and versioned.
Configs with them: RetinaNet (``configs/_base_/retinanet_partialnet_fpn_1x_coco.py``) and the
segmentors (mmseg's bases define them). Instance segmentation has none: mmdet's
``DetTTAModel`` merges boxes only.
"""
from mmengine.config import Config, ConfigDict

TTA_KEYS = ('tta_model', 'tta_pipeline')
# heads (in the model or its roi_head) that predict instance masks, which DetTTAModel refuses
MASK_HEAD_KEYS = ('mask_head', )


class TTAConfigError(ValueError):
    """A config that cannot be tested with test-time augmentation; the message says why."""


def _predicts_masks(model_cfg) -> bool:
    roi_head = model_cfg.get('roi_head') or {}
    return any(model_cfg.get(k) or roi_head.get(k) for k in MASK_HEAD_KEYS)


def enable_tta(cfg: Config) -> Config:
    """Switch ``cfg`` to test-time augmentation, in place, as ``tools/test.py --tta`` does.

    ``cfg.model`` becomes ``cfg.tta_model`` wrapping the original model (``module``), and
    ``cfg.test_dataloader.dataset.pipeline`` becomes ``cfg.tta_pipeline``.

    Args:
        cfg (Config): A loaded mmdet or mmseg config with ``tta_model`` and ``tta_pipeline``.

    Returns:
        Config: ``cfg`` itself.

    Raises:
        TTAConfigError: The config has no ``tta_model`` / ``tta_pipeline``, has them for a
            detector that predicts masks (``DetTTAModel`` merges boxes only), has no
            ``test_dataloader``, or was switched already.
    """
    missing = [key for key in TTA_KEYS if not cfg.get(key)]
    if missing:
        hint = ''
        if _predicts_masks(cfg.get('model') or {}):
            hint = (" This config predicts instance masks, which mmdet's DetTTAModel cannot "
                    'merge (it merges boxes only); test it without TTA, or use a box '
                    'detector such as configs/retinanet_partialnet_*_coco.py.')
        raise TTAConfigError(
            f'Test-time augmentation needs {" and ".join(TTA_KEYS)} in the config; this one '
            f'has no {" and no ".join(missing)}. Add them (e.g. tta_model=dict(type='
            f"'DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), "
            f'max_per_img=100)) with a tta_pipeline as in configs/_base_/'
            f'retinanet_partialnet_fpn_1x_coco.py; mmseg configs get both from mmseg\'s '
            f'bases), '
            f'or test without --tta.{hint}')
    tta_model = cfg.tta_model
    model = cfg.get('model')
    if model is None:
        raise TTAConfigError('The config has no model to wrap in its tta_model.')
    if model.get('type') == tta_model.get('type') and 'module' in model:
        raise TTAConfigError(f'Test-time augmentation is on already: the model is a '
                             f'{model["type"]} around {model["module"].get("type")}.')
    if tta_model.get('type') == 'DetTTAModel' and _predicts_masks(model):
        raise TTAConfigError(
            f"mmdet's DetTTAModel merges boxes only, and this {model.get('type')} predicts "
            f'instance masks (it would stop at the first image with "TTA of instance '
            f'segmentation does not support now"). Test it without TTA.')
    loader = cfg.get('test_dataloader')
    if not loader or not loader.get('dataset'):
        raise TTAConfigError('Test-time augmentation replaces the test pipeline, but the '
                             'config has no test_dataloader.dataset.')
    cfg.model = ConfigDict(**tta_model, module=model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg
