"""Mask R-CNN with PartialNet: real configs build and run; demo data trains, evaluates, reloads."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, data_root_options, fewer_rois, train_and_retest
from mmengine.config import Config

from partialnet_mm import partialnet_channels
from partialnet_mm.apis import test as run_test
from partialnet_mm.tooling import learning_benchmark as lb
from partialnet_mm.tooling.demo_data import make_coco_demo

ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_demo.py')


def real_config(arch):
    return osp.join(ROOT, 'configs', f'mask_rcnn_partialnet_{arch}_coco.py')


@pytest.mark.parametrize('arch', ARCHS)
def test_real_config_builds_and_runs_loss_and_predict(arch):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import DefaultScope

    cfg = Config.fromfile(real_config(arch))
    assert cfg.custom_imports['imports'] == ['partialnet_mm']
    assert cfg.model.neck.in_channels == partialnet_channels(arch)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 2e-4 and cfg.optim_wrapper.clip_grad is None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(fewer_rois(cfg.model))
    assert model.backbone.arch_name == arch
    packed = demo_mm_inputs(2, [[3, 320, 320]] * 2, num_items=[3, 2], num_classes=80,
                            with_mask=True)
    data = model.data_preprocessor(packed, True)
    model.train()
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k and isinstance(v, torch.Tensor))
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2 and hasattr(results[0], 'pred_instances')


def test_optimizer_skips_decay_on_norms_and_rpe_tables():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS

    cfg = Config.fromfile(real_config('t0'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    table = named['backbone.stages.3.blocks.0.spatial_mixing.attn.rpe.bias_table']
    assert decay[id(table)] == 0
    assert decay[id(named['backbone.stages.0.blocks.0.mlp.norm.weight'])] == 0
    assert decay[id(named['backbone.stages.3.blocks.0.spatial_mixing.attn.norm.weight'])] == 0
    assert decay[id(named['backbone.stages.0.blocks.0.mlp.fc1.weight'])] == 1e-4


def test_missing_coco_gives_one_clear_message(tmp_path):
    """tools/train.py itself: one message with the paths and the option, no traceback."""
    result = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                             real_config('t2')], capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode == 1
    message = result.stderr
    assert 'Dataset not found' in message
    assert "'data/coco/'" in message
    assert 'annotations/instances_train2017.json' in message
    assert '--cfg-options train_dataloader.dataset.data_root=' in message
    assert 'Traceback' not in message


# the tests of the trained demo run in one worker, which trains it once
TRAINED_DEMO = pytest.mark.xdist_group('detection_trained_demo')


@pytest.fixture(scope='module')
def trained_demo(tmp_path_factory):
    """The demo config trained for a few iterations on a small copy of the demo data, then
    reloaded by tools/test.py; returns (work_dir, options, data_root, metrics, predictions)."""
    base = tmp_path_factory.mktemp('det_demo')
    data_root = str(base / 'coco_demo') + '/'
    make_coco_demo(data_root, num_train=8, num_val=4)
    work_dir = base / 'work'
    options = data_root_options(data_root, f'{data_root}annotations/instances_val2017.json')
    options += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'randomness.seed=0']
    metrics, predictions = train_and_retest(
        DEMO_CONFIG, work_dir, options, ['coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50',
                                         'coco/segm_mAP_50'], base)
    return work_dir, options, data_root, metrics, predictions


@pytest.mark.slow
@TRAINED_DEMO
def test_demo_trains_validates_and_reloads(trained_demo):
    *_, metrics, predictions = trained_demo
    assert all(0 <= metrics[k] <= 1 for k in ('coco/bbox_mAP', 'coco/segm_mAP'))
    # the metrics come from real predictions: boxes and masks for every val image
    assert len(predictions) == 4
    assert all(len(p['pred_instances']['bboxes']) > 0 for p in predictions)
    assert all('masks' in p['pred_instances'] for p in predictions)


@pytest.mark.slow
def test_demo_main_job_trains_and_reports_coco_map(tmp_path):
    """The README's main job (tools/demo.py: the det task of the learning benchmark) on the
    smallest set (two train images, one batch; one val image), from scratch to keep it
    short."""
    data_root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(data_root, num_train=2, num_val=1)
    (record, ) = lb.run_tasks(['det'], dict(det=str(tmp_path / 'demo')),
                              dict(det=['train_cfg.max_epochs=1', 'randomness.seed=0']),
                              dict(det=data_root), from_scratch=True)
    assert record['task'] == 'det' and record['backbone_from'] is None
    assert record['checkpoint'].endswith('epoch_1.pth') and osp.isfile(record['checkpoint'])
    assert set(record['targets']) == {'coco/bbox_mAP', 'coco/segm_mAP'}
    assert all(0 <= record['metrics'][k] <= 1 for k in record['targets'])


@pytest.mark.slow
@TRAINED_DEMO
def test_show_dir_writes_drawn_predictions(trained_demo, tmp_path):
    import cv2
    work_dir, options, data_root, *_ = trained_demo
    show_dir = 'painted'
    run_test(DEMO_CONFIG, str(work_dir / 'epoch_1.pth'), str(tmp_path), show_dir=show_dir,
             cfg_options=options)
    painted = glob.glob(str(tmp_path / '*' / show_dir / '*.jpg'))
    assert len(painted) == 4
    original = cv2.imread(osp.join(data_root, 'val2017', osp.basename(painted[0])))
    drawn = cv2.imread(painted[0])
    assert drawn.shape[1] >= original.shape[1]  # mmdet draws GT | prediction side by side
    assert (drawn[:, -original.shape[1]:].astype(int) - original).any()


@pytest.mark.slow
@TRAINED_DEMO
def test_mmdet_own_test_tool_runs_our_config_and_checkpoint(trained_demo, tmp_path):
    """mmdet's shipped tools/test.py: custom_imports brings in partialnet_mm and its glue."""
    import mmdet
    work_dir, options, *_ = trained_demo
    mmdet_test = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    result = subprocess.run(
        [sys.executable, mmdet_test, DEMO_CONFIG, str(work_dir / 'epoch_1.pth'), '--work-dir',
         str(tmp_path), '--cfg-options', *options], capture_output=True, text=True, env=env,
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'coco/bbox_mAP' in result.stdout + result.stderr
