"""Models for the analysis tools: by PartialNet arch name or from any config, in eval mode,
with inputs at a config's test scale and no dataset; the ``--fuse`` switch."""
import copy
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.config import DictAction
from mmengine.model import is_model_wrapper
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import import_modules_from_strings

from ..libraries import require
from ..models import PartialNet, parse_arch
from ..runner.config import config_scope, scope_of

# What a target of the tools is built as, for a PartialNet arch name.
ARCH_MODEL_KINDS = ('backbone', 'classifier')
# Detection input for configs whose test scale is "resize keeping the aspect ratio": the
# 1280 x 800 (W x H) image that papers report detection FLOPs and speed at.
DETECTION_INPUT_HW = (800, 1280)


def build_config_model(cfg, checkpoint: Optional[str] = None) -> nn.Module:
    """The model of a config, in eval mode, on the CPU.

    Weights: ``checkpoint`` if given, else the constructors' defaults (pretrained
    ``init_cfg`` entries are not downloaded or loaded: speed and FLOPs do not depend on the
    values).
    """
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(config_scope(cfg))
    with scope_of(cfg):
        model = MODELS.build(copy.deepcopy(cfg.model))
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval()


def classifier_config(arch: str, num_classes: int = 1000, **backbone_kwargs) -> dict:
    """The ImageNet classifier of ``arch`` as ``configs/partialnet_*_imagenet.py`` builds it."""
    return dict(type='ImageClassifier',
                backbone=dict(type='PartialNet', arch=arch, out_indices=(3, ),
                              with_out_norm=False, **backbone_kwargs),
                neck=None,
                head=dict(type='PartialNetClsHead', arch=arch, num_classes=num_classes))


def build_arch_model(arch: str, kind: str = 'backbone', num_classes: int = 1000,
                     **backbone_kwargs) -> nn.Module:
    """A PartialNet by arch name, in eval mode: the backbone alone or the classifier.

    Args:
        arch (str): A key of :data:`~partialnet_mm.models.ARCH_SETTINGS`.
        kind (str): ``'backbone'`` (the dense-prediction backbone: four outputs, each with its
            norm) or ``'classifier'`` (mmpretrain's ImageClassifier with
            :class:`PartialNetClsHead`).
        num_classes (int): Classes of the classifier. Defaults to 1000 (ImageNet).
        **backbone_kwargs: More ``PartialNet`` arguments (e.g. ``with_cp=True``).
    """
    parse_arch(arch)  # a clear error for an unknown arch
    if kind == 'backbone':
        return PartialNet(arch=arch, **backbone_kwargs).eval()
    if kind == 'classifier':
        require('mmpretrain', "kind='classifier' (mmpretrain's ImageClassifier)")
        from mmpretrain.registry import MODELS as CLS_MODELS
        with scope_of('mmpretrain'):
            return CLS_MODELS.build(classifier_config(arch, num_classes,
                                                      **backbone_kwargs)).eval()
    raise ValueError(f'kind must be one of {ARCH_MODEL_KINDS}, got {kind!r}')


def _pipeline_crop(pipeline) -> Optional[Tuple[int, int]]:
    for t in pipeline or []:
        if t.get('type') in ('CenterCrop', ) and t.get('crop_size'):
            size = t['crop_size']
            return (size, size) if isinstance(size, int) else (size[1], size[0])
    return None


def default_input_shape(cfg) -> Tuple[int, int]:
    """``(H, W)`` a config's model is measured at when no shape is given.

    mmpretrain: the test pipeline's centre crop (224 for the ImageNet configs); mmseg: the
    config's ``crop_size``; mmdet: 800 x 1280 (H x W), the image papers report detection
    FLOPs at (the 1333 x 800 test resize of a 1280 x 800 image).
    """
    scope = config_scope(cfg)
    if scope == 'mmpretrain':
        loader = cfg.get('test_dataloader') or {}
        pipeline = (loader.get('dataset') or {}).get('pipeline') or cfg.get('test_pipeline')
        return _pipeline_crop(pipeline) or (224, 224)
    if scope == 'mmseg':
        crop = cfg.get('crop_size') or (512, 512)
        return tuple(crop)
    return DETECTION_INPUT_HW


def synthetic_data_samples(scope: str, batch: int, hw: Tuple[int, int]) -> Optional[list]:
    """Data samples carrying the metainfo a model's test forward reads (no annotations)."""
    meta = dict(img_shape=tuple(hw), ori_shape=tuple(hw), pad_shape=tuple(hw),
                batch_input_shape=tuple(hw), scale_factor=(1., 1.))
    # each library's data sample, imported for the scope asked for (the scope is a model's,
    # built with its library)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta) for _ in range(batch)]
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=dict(meta, padding_size=[0, 0, 0, 0]))
                for _ in range(batch)]
    if scope == 'mmpretrain':
        from mmpretrain.structures import DataSample
        return [DataSample(metainfo=meta) for _ in range(batch)]
    return None


def find_backbones(model: nn.Module) -> List[nn.Module]:
    """The model itself if it is a PartialNet, else its ``backbone`` (unwrapped)."""
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, PartialNet):
        return [model]
    backbone = getattr(model, 'backbone', None)
    return [backbone] if backbone is not None else []


def switch_model_to_deploy(model: nn.Module, memory_format: str = 'auto') -> nn.Module:
    """What ``--fuse`` does: the backbone's ``switch_to_deploy(memory_format)``.

    Call it in eval mode, after loading the weights. Raises a clear error for a model in
    training mode or a backbone without a deploy form (e.g. mmdet's ResNet).
    """
    if model.training:
        raise RuntimeError('--fuse / switch_to_deploy() is for inference (test, benchmark, '
                           'export); the model is in training mode')
    backbones = find_backbones(model)
    if not backbones:
        raise ValueError(f'--fuse: {type(model).__name__} has no backbone to fuse')
    for backbone in backbones:
        if not hasattr(backbone, 'switch_to_deploy'):
            raise ValueError(f'--fuse: the backbone {type(backbone).__name__} has no '
                             f'switch_to_deploy(); only PartialNet backbones can be fused')
        backbone.switch_to_deploy(memory_format=memory_format)
    return model


def parse_shape(shape: Optional[Sequence[int]]) -> Optional[Tuple[int, int]]:
    """``--shape`` (one side or H W) as ``(H, W)``; None stays None."""
    if not shape:
        return None
    if len(shape) == 1:
        return (shape[0], shape[0])
    if len(shape) == 2:
        return (shape[0], shape[1])
    raise ValueError(f'--shape takes one size or H W, got {list(shape)}')


def add_model_arguments(parser, default_kind: str, kind_help: str) -> None:
    """The model-selection arguments tools/benchmark.py and tools/get_flops.py share:
    ``--arch``, ``--kind``, ``--config``, ``--cfg-options`` and ``--shape``."""
    parser.add_argument('--arch', nargs='+', default=[], help='PartialNet archs (t0 ... l)')
    parser.add_argument('--kind', choices=ARCH_MODEL_KINDS, default=default_kind,
                        help=f'what an --arch is built as (default: {kind_help})')
    parser.add_argument('--config', nargs='+', default=[],
                        help='config files (also mmdet::..., mmseg::..., mmpretrain::...)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default=None,
        help='override settings of every --config, key=value '
        '(e.g. model.test_cfg.rpn.max_per_img=100)')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input size: S or H W (default: 224 for --arch, the config\'s '
                        'test scale for --config)')


def fastest_inference_form(model: nn.Module) -> nn.Module:
    """PartialNet folded (``switch_to_deploy``), then every conv-BN pair of the model fused
    (mmcv's ``fuse_conv_bn``; what mmdet's ``--fuse-conv-bn`` test option does)."""
    from mmcv.cnn import fuse_conv_bn
    if model.training:
        raise RuntimeError('fastest_inference_form: put the model in eval mode first')
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, PartialNet):
        backbone.switch_to_deploy()
    return fuse_conv_bn(model)
