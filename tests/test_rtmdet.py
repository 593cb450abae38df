"""RTMDet and RTMDet-Ins configs for every variant: plain configs stating mmdet's fine-tune
recipe for a foreign backbone, built through mmdet's registry, one loss and one predict pass
(T0; the other variants in the slow set); the demo configs' schedule and hooks."""
import glob
import os.path as osp
import re

import pytest
import torch
from conftest import ROOT
from mmengine.config import Config

from partialnet_mm import partialnet_channels
from partialnet_mm.models import ARCH_SETTINGS

ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
FAMILIES = {'rtmdet': 'RTMDetSepBNHead', 'rtmdet-ins': 'RTMDetInsSepBNHead'}
HOOK_TYPES = ['EMAHook', 'PipelineSwitchHook', 'RandomStateHook', 'NonFiniteLossHook']
# the RTMDet size of the same stage widths: its CSP blocks per neck stage
NECK_BLOCKS = dict(t0=1, t1=1, t2=1, s=2, m=3, l=4)


def config_path(family, arch):
    return osp.join(ROOT, 'configs', f'{family}_partialnet_{arch}_coco.py')


def rtmdet_files():
    return sorted(glob.glob(osp.join(ROOT, 'configs', '**', 'rtmdet*.py'), recursive=True))


def test_every_rtmdet_file_is_a_plain_config():
    """dicts, lists and _base_ only: nothing imported (custom_imports brings the package)."""
    files = rtmdet_files()
    assert len(files) == 2 * len(ARCHS) + 2 + 4  # variants, demos, 2 family + 2 model bases
    for path in files:
        with open(path) as f:
            source = f.read()
        assert not re.search(r'^\s*(import|from)\s', source, re.M), path


def build_model(cfg):
    """The config's model without its pretrained weights (none are downloaded in tests)."""
    from mmengine.registry import MODELS, DefaultScope
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_config_states_the_recipe(family, arch):
    cfg = Config.fromfile(config_path(family, arch))
    assert cfg.custom_imports['imports'] == ['partialnet_mm']
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert [h.type for h in cfg.custom_hooks] == HOOK_TYPES
    switch = cfg.custom_hooks[1]
    assert switch.switch_epoch == cfg.train_cfg.max_epochs - 10 == 90
    assert not any(t.type in ('CachedMosaic', 'CachedMixUp') for t in switch.switch_pipeline)
    assert any(t.type == 'CachedMosaic' for t in cfg.train_dataloader.dataset.pipeline)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-3, 0.05)
    assert cfg.model.data_preprocessor.bgr_to_rgb  # the backbone's ImageNet weights are RGB

    backbone, neck, head = cfg.model.backbone, cfg.model.neck, cfg.model.bbox_head
    assert backbone.type == 'PartialNet' and backbone.arch == arch
    assert backbone.init_cfg == dict(type='PartialNetPretrained', prefix='backbone.',
                                     checkpoint=f'checkpoints/partialnet_{arch}_in1k.pth')
    assert backbone.drop_path_rate == ARCH_SETTINGS[arch]['drop_path_rate']
    assert tuple(backbone.out_indices) == (1, 2, 3)
    widths = partialnet_channels(arch, (1, 2, 3))
    assert neck.in_channels == widths and neck.out_channels == widths[0]
    assert neck.num_csp_blocks == NECK_BLOCKS[arch]
    assert head.type == FAMILIES[family]
    assert head.in_channels == head.feat_channels == widths[0]
    if family == 'rtmdet-ins':
        assert cfg.val_evaluator.metric == ['bbox', 'segm']


# building and running the larger variants takes 5-30 s each on a 2-core CPU
RUN_ARCHS = ['t0'] + [pytest.param(a, marks=pytest.mark.slow) for a in ARCHS[1:]]


@pytest.mark.parametrize('arch', RUN_ARCHS)
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_config_builds_through_mmdet_and_runs_loss_and_predict(family, arch):
    from mmdet.testing import demo_mm_inputs

    model = build_model(Config.fromfile(config_path(family, arch)))
    with_mask = family == 'rtmdet-ins'
    packed = demo_mm_inputs(1, [[3, 64, 64]], num_items=[2], num_classes=80,
                            with_mask=with_mask)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    assert {'loss_cls', 'loss_bbox'} <= set(losses) and ('loss_mask' in losses) == with_mask
    total = sum(sum(v) if isinstance(v, (list, tuple)) else v
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and total > 0
    total.backward()
    stem_grad = model.backbone.stem.conv.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0  # the loss reaches the backbone
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 1 and 'bboxes' in results[0].pred_instances
    assert ('masks' in results[0].pred_instances) == with_mask


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_demo_config_keeps_the_model_and_hooks_on_the_demo_data(family):
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'demo', f'{family}_partialnet_t0_demo.py'))
    real = Config.fromfile(config_path(family, 't0'))
    assert demo.model.backbone.init_cfg is None  # no ImageNet checkpoint needed
    assert demo.model.bbox_head.num_classes == 4
    assert dict(demo.model.neck) == dict(real.model.neck)
    assert [h.type for h in demo.custom_hooks] == HOOK_TYPES
    max_epochs = demo.train_cfg.max_epochs
    assert demo.custom_hooks[1].switch_epoch < max_epochs
    assert demo.train_dataloader.dataset.data_root == 'data/coco_demo/'
    assert demo.default_hooks.checkpoint.interval == max_epochs
    assert demo.optim_wrapper.type == 'OptimWrapper'  # trains on a CPU
    metrics = demo.val_evaluator.metric
    assert metrics == (['bbox', 'segm'] if family == 'rtmdet-ins' else 'bbox')
