"""Every demo config trains and tests under its library's OWN tools (the ``tools/train.py``
and ``tools/test.py`` that mmdet, mmseg and mmpretrain ship in ``<package>/.mim/tools``), on a
CPU, on tiny demo data: the configs' ``custom_imports`` bring in everything they need.

The RetinaNet and UperNet demos are the new families' training check: a few iterations, then
the COCO bbox mAP / mIoU from the saved checkpoint's real predictions.
"""
import glob
import importlib
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
from conftest import ROOT, data_root_options

from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo, make_imagenet_demo

DET_OPTIONS = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
               'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=1',
               'default_hooks.logger.interval=1']
SEG_OPTIONS = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
               'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=2',
               'default_hooks.logger.interval=1']
CLS_OPTIONS = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
               'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
               'default_hooks.logger.interval=1']
# A freshly started RetinaNet (or RTMDet) scores every box near its 0.01 focal prior, below
# the 0.05 test threshold; after two iterations it still does. Keeping all boxes lets the COCO
# evaluation run on its real (if poor) predictions instead of reporting an empty result.
RETINANET_ALL_BOXES = ['model.test_cfg.score_thr=0.0']

# demo config: (library, data set, extra options, metric keys the test must report)
DEMOS = {
    'mask_rcnn_partialnet_t0_demo.py': ('mmdet', 'coco', [], ['coco/bbox_mAP', 'coco/segm_mAP']),
    'mask_rcnn_partialnet_t0_dpconv_demo.py':
        ('mmdet', 'coco', [], ['coco/bbox_mAP', 'coco/segm_mAP']),
    'retinanet_partialnet_t0_demo.py': ('mmdet', 'coco', RETINANET_ALL_BOXES, ['coco/bbox_mAP']),
    'rtmdet_partialnet_t0_demo.py': ('mmdet', 'coco', RETINANET_ALL_BOXES, ['coco/bbox_mAP']),
    'rtmdet-ins_partialnet_t0_demo.py':
        ('mmdet', 'coco', RETINANET_ALL_BOXES, ['coco/bbox_mAP', 'coco/segm_mAP']),
    'fpn_partialnet_t0_demo.py': ('mmseg', 'ade20k', [], ['mIoU']),
    'upernet_partialnet_t0_demo.py': ('mmseg', 'ade20k', [], ['mIoU']),
    'partialnet_t0_imagenet_demo.py': ('mmpretrain', 'imagenet', [], ['accuracy/top1']),
    'partialnet_t0_imagenet_dpconv_demo.py':
        ('mmpretrain', 'imagenet', [], ['accuracy/top1']),
}


def test_every_demo_config_is_covered():
    shipped = sorted(osp.basename(p) for p in glob.glob(osp.join(ROOT, 'configs', 'demo', '*.py')))
    assert shipped == sorted(DEMOS)


def own_tool(library, name):
    """``<library>/.mim/tools/<name>`` of the installed package."""
    path = osp.join(osp.dirname(importlib.import_module(library).__file__), '.mim', 'tools',
                    name)
    assert osp.isfile(path), f'{library} ships no {name} at {path}'
    return path


@pytest.fixture(scope='module')
def data_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('data')
    roots = dict(coco=str(base / 'coco_demo') + '/', ade20k=str(base / 'ade20k_demo'),
                 imagenet=str(base / 'imagenet_demo'))
    make_coco_demo(roots['coco'], num_train=4, num_val=2)
    make_ade20k_demo(roots['ade20k'], num_train=4, num_val=2)
    make_imagenet_demo(roots['imagenet'], num_train_per_class=2, num_val_per_class=1)
    return roots


def options_for(library, dataset, extra, roots):
    root = roots[dataset]
    if dataset == 'coco':
        data = data_root_options(root, root + 'annotations/instances_val2017.json')
    else:
        data = data_root_options(root)
    common = dict(mmdet=DET_OPTIONS, mmseg=SEG_OPTIONS, mmpretrain=CLS_OPTIONS)[library]
    return data + common + extra


def run(argv, cwd):
    """A tool in a fresh interpreter of this venv, importing partialnet_mm from this checkout."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, (argv, (result.stdout + result.stderr)[-5000:])
    return result.stdout + result.stderr


def last_record_with(paths, key):
    records = [json.loads(line) for path in paths for line in open(path)]
    found = [r for r in records if key in r]
    assert found, f'no {key} in {paths}'
    return found[-1]


def check_predictions(library, out, num_images):
    """The test's predictions as the tool dumped them: one per validation image, not empty."""
    if library == 'mmseg':  # --out is a folder of label maps
        assert len(glob.glob(osp.join(out, '*.png'))) == num_images
        return
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == num_images
    for prediction in predictions:
        if library == 'mmdet':
            assert len(prediction['pred_instances']['bboxes']) > 0
        else:
            assert prediction['pred_score'].sum() == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('demo', sorted(DEMOS))
def test_library_own_train_then_test_on_demo_config(demo, data_roots, tmp_path):
    library, dataset, extra, metric_keys = DEMOS[demo]
    config = osp.join(ROOT, 'configs', 'demo', demo)
    options = options_for(library, dataset, extra, data_roots)
    work_dir = tmp_path / 'train'
    run([own_tool(library, 'train.py'), config, '--work-dir', str(work_dir),
         '--cfg-options', *options], cwd=tmp_path)
    checkpoints = sorted(glob.glob(str(work_dir / '*.pth')), key=osp.getmtime)
    assert checkpoints, f'no checkpoint in {work_dir}'
    logged = last_record_with(glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json')),
                              metric_keys[0])

    test_dir = tmp_path / 'test'
    out = str(tmp_path / ('predictions' if library == 'mmseg' else 'predictions.pkl'))
    run([own_tool(library, 'test.py'), config, checkpoints[-1], '--work-dir', str(test_dir),
         '--out', out, '--cfg-options', *options], cwd=tmp_path)
    test_logs = [p for p in glob.glob(str(test_dir / '*' / '*.json'))]
    tested = last_record_with(test_logs, metric_keys[0])
    for key in metric_keys:
        assert key in tested and key in logged, key
        # the reloaded checkpoint predicts what the trained model predicted in validation
        assert tested[key] == pytest.approx(logged[key], abs=1e-6), key
    num_images = dict(coco=2, ade20k=2, imagenet=4)[dataset]
    check_predictions(library, out, num_images)


def test_classification_demo_trains_in_fp32_and_the_real_recipe_keeps_amp():
    """The recipe trains with AMP on any device (mmengine's wrapper where a GPU is); the demo
    trains in fp32, with the same optimizer settings (and its own lr)."""
    from mmengine.config import Config
    real = Config.fromfile(osp.join(ROOT, 'configs', 'partialnet_t0_imagenet.py')).optim_wrapper
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'demo',
                                    'partialnet_t0_imagenet_demo.py')).optim_wrapper
    assert (real.type, real.loss_scale) == ('AnyDeviceAmpOptimWrapper', 'dynamic')
    assert demo.type == 'OptimWrapper' and 'loss_scale' not in demo
    assert demo.paramwise_cfg == real.paramwise_cfg
    assert dict(demo.optimizer, lr=real.optimizer.lr) == real.optimizer
