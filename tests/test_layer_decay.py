"""Layer-wise learning-rate decay: mmpretrain's constructor on a PartialNet classifier, and
the project's PartialNetLayerDecayOptimWrapperConstructor on a detector and a segmentor."""
import os.path as osp

import pytest
from conftest import ROOT
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from partialnet_mm.analysis.models import classifier_config

RATE = 0.8


def groups_by_name(model, wrapper):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: g for g in wrapper.optimizer.param_groups}


def assert_depths_follow_the_network(groups, backbone, base_lr, outside):
    """Stem 0; depths grow with stage and block; ``outside`` (neck/head) params are the top
    layer at the full lr; every depth has its own lr, ``base_lr * RATE ** (top - depth)``."""
    top = backbone.num_layers - 1
    assert groups['backbone.stem.conv.weight']['layer_id'] == 0
    block_depths = []
    for stage, depth in enumerate(backbone.depths):
        for block in range(depth):
            name = f'backbone.stages.{stage}.blocks.{block}.mlp.fc1.weight'
            block_depths.append(groups[name]['layer_id'])
    assert block_depths == list(range(1, sum(backbone.depths) + 1))  # stage by stage, block
    assert groups['backbone.stages.1.downsample.conv.weight']['layer_id'] == \
        groups['backbone.stages.1.blocks.0.mlp.fc1.weight']['layer_id']
    for name in outside:
        assert groups[name]['layer_id'] == top
    for name, group in groups.items():
        expected = base_lr * RATE**(top - group['layer_id'])
        if 'bias_table' not in name:
            assert group['lr'] == pytest.approx(expected, rel=1e-9), name
    lrs = {g['layer_id']: g['lr'] for g in groups.values()}
    assert len(set(lrs.values())) == len(lrs) == top + 1  # one distinct lr per depth
    assert lrs[0] < lrs[top // 2] < lrs[top] == pytest.approx(base_lr)


def test_mmpretrain_layer_decay_constructor_on_a_partialnet_classifier():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(classifier_config('t0', num_classes=10))
        wrapper = build_optim_wrapper(model, dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            constructor='LearningRateDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=RATE, norm_decay_mult=0.)))
    groups = groups_by_name(model, wrapper)
    assert len(groups) == len(list(model.parameters()))
    head = [n for n in groups if n.startswith('head.')]
    assert head
    assert_depths_follow_the_network(groups, model.backbone, 1e-3, head)
    assert groups['backbone.stem.norm.weight']['weight_decay'] == 0


def build_with_layer_decay(config, scope, options):
    """A config's model and its optimizer groups, ``options`` merged into the config as
    ``--cfg-options`` would (dotted keys: the recipe's other paramwise settings stay)."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    cfg.merge_from_dict(dict(options, **{'model.backbone.init_cfg': None}))
    registry = dict(mmdet=DET_MODELS, mmseg=SEG_MODELS)[scope]
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return cfg, model, groups_by_name(model, wrapper)


DECAY = {'optim_wrapper.constructor': 'PartialNetLayerDecayOptimWrapperConstructor',
         'optim_wrapper.paramwise_cfg.layer_decay_rate': RATE}


@pytest.mark.parametrize('config,scope,outside', [
    ('mask_rcnn_partialnet_t0_coco.py', 'mmdet',
     ['neck.lateral_convs.0.conv.weight', 'rpn_head.rpn_conv.weight',
      'roi_head.mask_head.conv_logits.weight']),
    ('upernet_partialnet_t0_ade20k.py', 'mmseg',
     ['decode_head.conv_seg.weight', 'auxiliary_head.conv_seg.weight']),
])
def test_project_constructor_decays_backbone_lrs_and_keeps_the_recipe(config, scope, outside):
    cfg, model, groups = build_with_layer_decay(config, scope, DECAY)
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert len(groups) == len(list(model.parameters()))
    assert_depths_follow_the_network(groups, model.backbone, base_lr, outside)
    # the recipe's paramwise settings still apply: no decay on norms and iRPE tables
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    table = 'backbone.stages.3.blocks.0.spatial_mixing.attn.rpe.bias_table'
    assert groups[table]['weight_decay'] == 0
    assert groups['backbone.stem.norm.weight']['weight_decay'] == 0
    assert groups['backbone.stages.0.blocks.0.mlp.fc1.weight']['weight_decay'] == base_wd


def test_custom_lr_mult_and_depth_multiply():
    cfg, model, groups = build_with_layer_decay('mask_rcnn_partialnet_t0_coco.py', 'mmdet', dict(
        DECAY, **{'optim_wrapper.paramwise_cfg.custom_keys': {
            'backbone.stem': dict(lr_mult=0.5)}}))
    top = model.backbone.num_layers - 1
    assert groups['backbone.stem.conv.weight']['lr'] == pytest.approx(
        cfg.optim_wrapper.optimizer.lr * 0.5 * RATE**top)


@pytest.mark.parametrize('rate,message', [
    (None, 'needs optim_wrapper.paramwise_cfg.layer_decay_rate'),
    (1.5, r'must be a number in \(0, 1\], got 1.5'),
    ('0.9', r"must be a number in \(0, 1\], got '0.9'"),
])
def test_bad_decay_settings_are_named(rate, message):
    options = {'optim_wrapper.constructor': 'PartialNetLayerDecayOptimWrapperConstructor'}
    if rate is not None:
        options['optim_wrapper.paramwise_cfg.layer_decay_rate'] = rate
    with pytest.raises(ValueError, match=message):
        build_with_layer_decay('mask_rcnn_partialnet_t0_coco.py', 'mmdet', options)


def test_a_backbone_without_layer_depths_is_refused_with_the_fix():
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(
            type='RetinaNet',
            backbone=dict(type='ResNet', depth=18, out_indices=(1, 2, 3)),
            neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=32, num_outs=3),
            bbox_head=dict(
                type='RetinaHead', num_classes=2, in_channels=32, feat_channels=32,
                anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                      scales_per_octave=3, ratios=[1.0],
                                      strides=[8, 16, 32]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                loss_cls=dict(type='FocalLoss', use_sigmoid=True),
                loss_bbox=dict(type='L1Loss'))))
        with pytest.raises(TypeError, match='ResNet.*Remove optim_wrapper.constructor'):
            build_optim_wrapper(model, dict(
                optimizer=dict(type='AdamW', lr=1e-4),
                constructor='PartialNetLayerDecayOptimWrapperConstructor',
                paramwise_cfg=dict(layer_decay_rate=RATE)))
