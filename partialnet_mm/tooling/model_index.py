"""The model index: ``model-index.yml`` and ``configs/metafile.yml`` in OpenMMLab's format.

OpenMMLab packages describe their configs in metafiles (``Collections`` of model families,
``Models`` with ``Name``, ``In Collection``, ``Config``, ``Metadata``) imported by a
``model-index.yml`` at the repository root; ``mim`` and ``mmengine.hub`` read them from
``<package>/.mim`` of an installed package. This module lists every config under ``configs/``
(except ``_base_``) with its parameter count and FLOPs, so that the index is generated, never
hand-edited (``python tools/make_model_index.py`` rewrites both files).

FLOPs are counted as ``tools/get_flops.py`` counts them (mmengine's ``FlopAnalyzer`` with the
attention handle of :func:`partialnet_mm.analysis.count_flops`; one multiply-add = one FLOP):
the whole model's test-mode network (``mode='tensor'``) on one image of ``FLOPs Input``
(height x width: detection 800 x 1280, segmentation the config's ``crop_size``,
classification the test centre crop). Weights are seeded, so two-stage detectors' RoI heads
run on the same proposals every time. DPConv configs learn their splits while training and
cannot be traced in that form: their FLOPs are those of the plain network at the starting
split (what ``tools/export_dpconv.py`` would export before any training), their parameters
those of the DPConv model. No trained weights or results are listed: the project publishes
configs, not checkpoints.
"""
import copy
import glob
import os
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import torch

from ..analysis.flops import TensorForward, count_flops
from ..analysis.models import build_config_model, default_input_shape
from ..dpconv.export import plain_mixer_cfg
from ..runner.config import config_scope, load_config

PAPER = OrderedDict(URL='https://arxiv.org/abs/2502.01303',
                    Title='Partial Channel Network: Compute Fewer, Perform Better')
MODEL_INDEX = 'model-index.yml'
METAFILE = 'configs/metafile.yml'
# _base_ fragments and mmdeploy's deploy configs (configs/deploy) are not models
EXCLUDED_DIRS = ('_base_', 'deploy')
SEED = 0

# collection name -> (task, architecture). A config joins the collection its model is.
COLLECTIONS = OrderedDict([
    ('PartialNet', ('Image Classification', ['PartialNet', 'Partial Convolution',
                                             'Partial Attention'])),
    ('Mask R-CNN (PartialNet)', ('Instance Segmentation', ['PartialNet', 'FPN', 'RPN',
                                                          'RoIAlign', 'Mask R-CNN'])),
    ('Cascade Mask R-CNN (PartialNet)', ('Instance Segmentation',
                                         ['PartialNet', 'FPN', 'RPN', 'RoIAlign',
                                          'Cascade R-CNN', 'Mask R-CNN'])),
    ('RetinaNet (PartialNet)', ('Object Detection', ['PartialNet', 'FPN', 'Focal Loss',
                                                     'RetinaNet'])),
    ('RTMDet (PartialNet)', ('Object Detection', ['PartialNet', 'CSPNeXtPAFPN', 'RTMDet'])),
    ('RTMDet-Ins (PartialNet)', ('Instance Segmentation', ['PartialNet', 'CSPNeXtPAFPN',
                                                           'RTMDet', 'RTMDet-Ins'])),
    ('Semantic FPN (PartialNet)', ('Semantic Segmentation', ['PartialNet', 'FPN'])),
    ('UperNet (PartialNet)', ('Semantic Segmentation', ['PartialNet', 'UPerNet', 'PPM',
                                                        'FPN'])),
])
# (scope, model type, head type or None) -> collection; the head tells apart what one model
# type builds: mmseg's decode heads, RTMDet's box and instance heads
MODEL_COLLECTIONS = {
    ('mmpretrain', 'ImageClassifier', None): 'PartialNet',
    ('mmdet', 'MaskRCNN', None): 'Mask R-CNN (PartialNet)',
    ('mmdet', 'CascadeRCNN', None): 'Cascade Mask R-CNN (PartialNet)',
    ('mmdet', 'RetinaNet', None): 'RetinaNet (PartialNet)',
    ('mmdet', 'RTMDet', 'RTMDetSepBNHead'): 'RTMDet (PartialNet)',
    ('mmdet', 'RTMDet', 'RTMDetInsSepBNHead'): 'RTMDet-Ins (PartialNet)',
    ('mmseg', 'EncoderDecoder', 'FPNHead'): 'Semantic FPN (PartialNet)',
    ('mmseg', 'EncoderDecoder', 'UPerHead'): 'UperNet (PartialNet)',
}
DATASET_NAMES = {'CocoDataset': 'COCO', 'ADE20KDataset': 'ADE20K',
                 'ImageNet': 'ImageNet-1k'}
# the layout each library's demo set is written in (partialnet_mm.tooling.demo_data)
DEMO_LAYOUTS = dict(mmdet='COCO', mmseg='ADE20K', mmpretrain='ImageNet')


def list_configs(root: str) -> List[str]:
    """Every config under ``<root>/configs`` except the ``_base_`` fragments, relative to
    ``root`` with ``/`` separators, sorted."""
    configs_dir = osp.join(root, 'configs')
    if not osp.isdir(configs_dir):
        raise FileNotFoundError(f'{configs_dir} does not exist: give the repository root')
    found = []
    for path in glob.glob(osp.join(configs_dir, '**', '*.py'), recursive=True):
        rel = osp.relpath(path, root).replace(os.sep, '/')
        if not set(rel.split('/')[1:-1]) & set(EXCLUDED_DIRS):
            found.append(rel)
    return sorted(found)


def collection_of(cfg, config: str) -> str:
    """The collection of a loaded config, from its library and model (a clear error for a
    model family the index does not know yet)."""
    model = cfg.model
    head = (model.get('decode_head') or {}).get('type')
    key = (config_scope(cfg), model.get('type'), head if config_scope(cfg) == 'mmseg' else None)
    if key not in MODEL_COLLECTIONS and config_scope(cfg) == 'mmdet':
        key = key[:2] + ((model.get('bbox_head') or {}).get('type'), )
    if key not in MODEL_COLLECTIONS:
        raise ValueError(f'{config}: no model-index collection for {key} (library, model, '
                         f'decode head); add it to partialnet_mm.model_index.MODEL_COLLECTIONS')
    return MODEL_COLLECTIONS[key]


def training_data(cfg) -> str:
    """The dataset a config trains on: COCO / ADE20K / ImageNet-1k, or the demo data."""
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset and other wrappers
        dataset = dataset.dataset
    root = str(dataset.get('data_root', ''))
    if 'demo' in root:
        return f'synthetic {DEMO_LAYOUTS[config_scope(cfg)]}-layout demo set ' \
               f'(partialnet_mm.tooling.demo_data)'
    return DATASET_NAMES.get(dataset.get('type'), dataset.get('type'))


def schedule(cfg) -> Dict[str, int]:
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_epochs' in train_cfg:
        return {'Epochs': int(train_cfg.max_epochs)}
    if 'max_iters' in train_cfg:
        return {'Iterations': int(train_cfg.max_iters)}
    return {}


def uses_dpconv(cfg) -> bool:
    mixers = cfg.model.get('backbone', {}).get('mixer_cfgs') or []
    mixers = [mixers] if isinstance(mixers, dict) else mixers
    return any(m and m.get('type') == 'DPConv' for m in mixers)


def starting_split_config(cfg):
    """``cfg`` with every DPConv mixer replaced by the plain mixer it starts as."""
    plain = copy.deepcopy(cfg)
    mixers = plain.model.backbone.mixer_cfgs
    mixers = [mixers] if isinstance(mixers, dict) else mixers
    plain.model.backbone.mixer_cfgs = [plain_mixer_cfg(m) if m else None for m in mixers]
    return plain


def measure(cfg) -> Dict:
    """Parameters and FLOPs of a loaded config's model (see the module docstring)."""
    from mmengine.analysis import parameter_count
    hw = tuple(int(s) for s in default_input_shape(cfg))
    torch.manual_seed(SEED)
    model = build_config_model(cfg)
    params = parameter_count(model)['']
    if uses_dpconv(cfg):
        torch.manual_seed(SEED)
        model = build_config_model(starting_split_config(cfg))
    torch.manual_seed(SEED)
    images = torch.randn(1, 3, *hw)
    with torch.no_grad():
        counted = count_flops(TensorForward(model, config_scope(cfg), hw), (images, ))
    return dict(params=int(params), flops=int(counted['flops']), input_hw=hw)


def describe_config(root: str, config: str) -> OrderedDict:
    """The metafile entry of one config (``config`` relative to ``root``)."""
    cfg = load_config(osp.join(root, config))
    measured = measure(cfg)
    metadata = OrderedDict([('Training Data', training_data(cfg)), *schedule(cfg).items(),
                            ('Parameters', measured['params']), ('FLOPs', measured['flops']),
                            ('FLOPs Input', '{}x{}'.format(*measured['input_hw']))])
    if uses_dpconv(cfg):
        metadata['FLOPs Note'] = 'DPConv learns its splits: FLOPs at the starting split'
    return OrderedDict([('Name', osp.splitext(osp.basename(config))[0]),
                        ('In Collection', collection_of(cfg, config)), ('Config', config),
                        ('Metadata', metadata)])


def build_metafile(root: str, configs: Optional[List[str]] = None,
                   progress: Optional[Callable[[str], None]] = None,
                   listed: Optional[Dict[str, dict]] = None) -> OrderedDict:
    """``Collections`` (those with configs) and one ``Models`` entry per config.

    ``listed``: entries to reuse instead of measuring, by config path (see
    :func:`write_model_index`).
    """
    configs = list_configs(root) if configs is None else configs
    models = []
    for config in configs:
        if listed and config in listed:
            models.append(OrderedDict(listed[config]))
            continue
        if progress:
            progress(config)
        models.append(describe_config(root, config))
    used = [name for name in COLLECTIONS if any(m['In Collection'] == name for m in models)]
    collections = [OrderedDict([
        ('Name', name),
        ('Metadata', OrderedDict([('Task', COLLECTIONS[name][0]),
                                  ('Architecture', COLLECTIONS[name][1])])),
        ('Paper', PAPER),
    ]) for name in used]
    return OrderedDict([('Collections', collections), ('Models', models)])


def _plain(value):
    """OrderedDicts and tuples as the plain dicts and lists YAML writes without tags."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_model_index(root: str, progress: Optional[Callable[[str], None]] = None,
                      reuse_listed: bool = False) -> Dict:
    """Write ``configs/metafile.yml`` and ``model-index.yml`` under ``root``; returns the
    metafile's content. ``reuse_listed``: measure only the configs the current index does not
    list yet (right only when the listed ones have not changed)."""
    import yaml
    listed = None
    if reuse_listed and osp.isfile(osp.join(root, MODEL_INDEX)):
        listed = {m['Config']: m for m in load_model_index(root)}
    metafile = build_metafile(root, progress=progress, listed=listed)
    header = ('# Generated by `python tools/make_model_index.py` '
              '(partialnet_mm/model_index.py): do not edit.\n')
    with open(osp.join(root, METAFILE), 'w') as f:
        f.write(header)
        yaml.safe_dump(_plain(metafile), f, sort_keys=False, width=100)
    with open(osp.join(root, MODEL_INDEX), 'w') as f:
        f.write(header)
        yaml.safe_dump({'Import': [METAFILE]}, f, sort_keys=False)
    return metafile


def load_model_index(root: str) -> List[dict]:
    """The ``Models`` entries of every metafile ``<root>/model-index.yml`` imports."""
    import yaml
    with open(osp.join(root, MODEL_INDEX)) as f:
        index = yaml.safe_load(f)
    models = []
    for metafile in index.get('Import', []):
        with open(osp.join(root, metafile)) as f:
            models += yaml.safe_load(f).get('Models', [])
    return models
