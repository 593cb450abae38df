"""What ``tools/benchmark.py``, ``tools/get_flops.py`` and ``tools/export_onnx.py`` share.

* :func:`load_config`: a config file, also as ``mmdet::path`` / ``mmseg::`` / ``mmpretrain::``;
* :func:`build_arch_model` / :func:`build_config_model`: a model from a PartialNet arch name
  (backbone alone, or the ImageNet classifier) or from any mmdet/mmseg/mmpretrain config;
* :func:`default_input_shape` and :func:`synthetic_data_samples`: inputs at a config's test
  scale without a dataset;
* :func:`switch_model_to_deploy`: the ``--fuse`` flag (fold the backbone for inference).
"""
import contextlib
import copy
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn

from .models import PartialNet

# What a target of the tools is built as, for a PartialNet arch name.
ARCH_MODEL_KINDS = ('backbone', 'classifier')
# Detection input for configs whose test scale is "resize keeping the aspect ratio": the
# 1280 x 800 (W x H) image that papers report detection FLOPs and speed at.
DETECTION_INPUT_HW = (800, 1280)


def load_config(path: str):
    """``mmengine.Config.fromfile``, also for ``'mmdet::mask-rcnn/....py'``-style paths.

    Args:
        path (str): A config file, or ``<package>::<path inside its configs>`` of an
            installed OpenMMLab package (as in ``_base_`` lists).
    """
    from mmengine.config import Config
    if '::' in path:
        path = installed_config_path(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} not found')
    return Config.fromfile(path)


def installed_config_path(path: str) -> str:
    """The file of ``'<module>::<path>'`` inside an installed package's configs.

    mmengine resolves this syntax in ``_base_`` lists only (and its helper rejects paths with
    hyphens, such as ``mask-rcnn/...``); this looks in ``<module>/.mim/configs`` (pip
    installs) and ``<module>/../configs`` (source checkouts).
    """
    import importlib.util
    module, rel_path = path.split('::', 1)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f'config {path!r}: package {module!r} is not installed')
    root = osp.dirname(spec.origin)
    candidates = [osp.join(root, '.mim', 'configs', rel_path),
                  osp.join(osp.dirname(root), 'configs', rel_path)]
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    hint = ''
    configs_root = next((osp.dirname(osp.dirname(c)) for c in candidates
                         if osp.isdir(osp.dirname(osp.dirname(c)))), None)
    folder = rel_path.split('/', 1)[0]
    if configs_root and '/' in rel_path:
        import difflib
        close = difflib.get_close_matches(folder, os.listdir(configs_root), n=1)
        if close:
            hint = f'; did you mean {module}::{close[0]}/{rel_path.split("/", 1)[1]}?'
    raise FileNotFoundError(f'config {path!r} not found in the installed {module} '
                            f'(looked at {candidates}){hint}')


def config_scope(cfg) -> str:
    """The library a config belongs to (its ``default_scope``; mmengine if none)."""
    return cfg.get('default_scope') or 'mmengine'


@contextlib.contextmanager
def scope_of(cfg_or_scope):
    """Make a config's library the default registry scope inside the block."""
    from mmengine.registry import DefaultScope
    scope = cfg_or_scope if isinstance(cfg_or_scope, str) else config_scope(cfg_or_scope)
    with DefaultScope.overwrite_default_scope(scope):
        yield


def build_config_model(cfg, checkpoint: Optional[str] = None) -> nn.Module:
    """The model of a config, in eval mode, on the CPU.

    Weights: ``checkpoint`` if given, else the constructors' defaults (pretrained
    ``init_cfg`` entries are not downloaded or loaded: speed and FLOPs do not depend on the
    values).
    """
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(config_scope(cfg))
    with scope_of(cfg):
        model = MODELS.build(copy.deepcopy(cfg.model))
    if checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval()


def classifier_config(arch: str, num_classes: int = 1000) -> dict:
    """The ImageNet classifier of ``arch`` as ``configs/partialnet_*_imagenet.py`` builds it."""
    return dict(type='ImageClassifier',
                backbone=dict(type='PartialNet', arch=arch, out_indices=(3, ),
                              with_out_norm=False),
                neck=None,
                head=dict(type='PartialNetClsHead', arch=arch, num_classes=num_classes))


def build_arch_model(arch: str, kind: str = 'backbone', num_classes: int = 1000) -> nn.Module:
    """A PartialNet by arch name, in eval mode: the backbone alone or the classifier.

    Args:
        arch (str): A key of :attr:`PartialNet.arch_settings`.
        kind (str): ``'backbone'`` (the dense-prediction backbone: four outputs, each with its
            norm) or ``'classifier'`` (mmpretrain's ImageClassifier with
            :class:`PartialNetClsHead`).
        num_classes (int): Classes of the classifier. Defaults to 1000 (ImageNet).
    """
    PartialNet.parse_arch(arch)  # a clear error for an unknown arch
    if kind == 'backbone':
        return PartialNet(arch=arch).eval()
    if kind == 'classifier':
        from mmpretrain.registry import MODELS as CLS_MODELS
        with scope_of('mmpretrain'):
            return CLS_MODELS.build(classifier_config(arch, num_classes)).eval()
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
    from mmengine.model import is_model_wrapper
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


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """FLOPs (multiply-adds) of ``aten::scaled_dot_product_attention``: ``q k^T`` and ``a v``.

    mmengine's (fvcore's) counter has no handle for this operator and would skip it with a
    warning; the authors' implementation computes the same products with ``matmul``, which
    it counts. Softmax, scaling and the bias addition are not counted (as for ``matmul``).
    """
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch_heads = 1
    for size in q[:-2]:
        batch_heads *= size
    queries, keys = q[-2], k[-2]
    return batch_heads * queries * keys * (q[-1] + v[-1])


def count_flops(model: nn.Module, inputs: tuple) -> dict:
    """Parameters and FLOPs of ``model(*inputs)`` through mmengine's analysis (jit trace).

    FLOPs follow the fvcore/mmengine convention papers use: one multiply-add is one FLOP.

    Returns:
        dict: ``params``, ``flops`` (with attention), ``attention_flops`` (the
        ``scaled_dot_product_attention`` part mmengine alone would miss), ``analyzer``.
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    by_operator = analyzer.by_operator()
    return dict(params=parameter_count(model)[''], flops=analyzer.total(),
                attention_flops=by_operator.get('scaled_dot_product_attention', 0),
                analyzer=analyzer)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    import platform
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return name


def add_model_arguments(parser, default_kind: str, kind_help: str) -> None:
    """The model-selection arguments tools/benchmark.py and tools/get_flops.py share:
    ``--arch``, ``--kind``, ``--config``, ``--cfg-options`` and ``--shape``."""
    from mmengine.config import DictAction
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
