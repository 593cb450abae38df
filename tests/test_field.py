"""The shipped configs, run as users run them (the field tests).

Each family's shipped config (not a demo) trains in a folder laid out as the libraries
expect it - ``data/coco/annotations/instances_{train,val}2017.json`` with ``train2017/``
and ``val2017/``, ``data/ade/ADEChallengeData2016/``, ``data/imagenet/{train,val,meta}`` and
``checkpoints/partialnet_{arch}_in1k.pth`` - on tiny sets the project generates
(:mod:`partialnet_mm.tooling.demo_data`, COCO's and ImageNet's own class ids). Nothing is changed
but what the issue allows:

* the schedule (``max_epochs`` / ``max_iters``) and the hook intervals, so that a run ends
  after its first checkpoint and validation;
* where a config's input size makes a run cost minutes on a CPU, the input: every image
  scale and crop of its pipelines times :data:`FAMILIES`' ``shrink`` (same transforms, same
  order), written as a child config of the shipped one;
* for detectors whose test score threshold (0.05) is above what a model two iterations from
  ImageNet weights scores, ``score_thr`` 0, so that the evaluator computes real metrics
  (:data:`KEEP_ALL_BOXES`; the mission test keeps the threshold and meets the evaluator's
  "empty results" path).

Per family: one tool set trains to the first checkpoint (with validation), the other resumes
from it with ``--resume`` and trains past it, and both tool sets test the last checkpoint,
which must reproduce the metrics validation logged; which tool set goes first alternates, so
every tool (``tools/train.py`` / ``tools/test.py`` and the library's own) trains, resumes and
tests some family. The mission's command on the T2 config runs exactly as the README says.
"""
import glob
import importlib
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, load_tool
from mmengine.config import Config

from partialnet_mm import PartialNet
from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo, make_imagenet_demo

pytestmark = pytest.mark.filterwarnings('ignore')

TOOLS = osp.join(ROOT, 'tools')
KEEP_ALL_BOXES = dict(
    two_stage=['model.test_cfg.rcnn.score_thr=0.0'],
    one_stage=['model.test_cfg.score_thr=0.0'])


def epochs(n, checkpoint_interval=False):
    options = [f'train_cfg.max_epochs={n}', 'train_cfg.val_interval=1']
    return options + (['default_hooks.checkpoint.interval=1'] if checkpoint_interval else [])


def iterations(n):
    return [f'train_cfg.max_iters={n}', 'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=1']


# family: (shipped config, library, metric validation logs, input scale factor, options per
# run (given the run's last epoch / iteration), the options beyond the schedule)
FAMILIES = {
    'mask_rcnn_1x': ('mask_rcnn_partialnet_t0_coco.py', 'mmdet', 'coco/segm_mAP', 0.25,
                     epochs, KEEP_ALL_BOXES['two_stage']),
    'mask_rcnn_ms_3x': ('mask_rcnn_partialnet_t0_ms_3x_coco.py', 'mmdet', 'coco/segm_mAP',
                        0.25, epochs, KEEP_ALL_BOXES['two_stage']),
    'cascade_mask_rcnn_ms_3x': ('cascade_mask_rcnn_partialnet_t0_ms_3x_coco.py', 'mmdet',
                                'coco/segm_mAP', 0.25, epochs, KEEP_ALL_BOXES['two_stage']),
    'retinanet': ('retinanet_partialnet_t0_coco.py', 'mmdet', 'coco/bbox_mAP', 0.25, epochs,
                  KEEP_ALL_BOXES['one_stage']),
    # RTMDet: checkpoints every 10 epochs as shipped; the pipeline switch (Mosaic/MixUp off)
    # moved from epoch 90 to the resumed run's epoch 2; EMA as shipped
    'rtmdet': ('rtmdet_partialnet_t0_coco.py', 'mmdet', 'coco/bbox_mAP', 0.5,
               lambda n: epochs(n, True) + ['custom_hooks.1.switch_epoch=1'],
               KEEP_ALL_BOXES['one_stage']),
    'rtmdet-ins': ('rtmdet-ins_partialnet_t0_coco.py', 'mmdet', 'coco/segm_mAP', 0.5,
                   lambda n: epochs(n, True) + ['custom_hooks.1.switch_epoch=1'],
                   KEEP_ALL_BOXES['one_stage']),
    'semantic_fpn': ('fpn_partialnet_t0_ade20k.py', 'mmseg', 'mIoU', 0.25, iterations, []),
    'upernet': ('upernet_partialnet_t0_ade20k.py', 'mmseg', 'mIoU', 0.25, iterations, []),
    # the 192 -> 224 px switch of the last 20 epochs moved to the resumed run's epoch 2
    'imagenet': ('partialnet_t0_imagenet.py', 'mmpretrain', 'accuracy/top1', 1.0,
                 lambda n: epochs(n) + ['custom_hooks.0.schedule.0.action_epoch=2'], []),
}
FIRST_TOOLS = dict(zip(sorted(FAMILIES), ['ours', 'library'] * len(FAMILIES)))


# ------------------------------------------------------------------ a user's folder
def write_pretrained(path, arch):
    """What ``tools/convert_checkpoint.py`` writes from the authors' ImageNet file: the
    classifier's weights with mmpretrain's key names (random weights here)."""
    torch.manual_seed(0)
    backbone = PartialNet(arch=arch, with_out_norm=False)
    backbone.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(meta=dict(arch=arch), state_dict={
        f'backbone.{k}': v for k, v in backbone.state_dict().items()}), path)


def make_user_folder(root, num_coco_train=2):
    """The folder a user runs the tools from: datasets at the configs' default places and
    the converted ImageNet checkpoints."""
    make_coco_demo(osp.join(root, 'data', 'coco'), num_train=num_coco_train, num_val=2,
                   image_size=(240, 320), coco_classes=True)
    make_ade20k_demo(osp.join(root, 'data', 'ade', 'ADEChallengeData2016'), num_train=4,
                     num_val=2)
    make_imagenet_demo(osp.join(root, 'data', 'imagenet'), num_train_per_class=2,
                       num_val_per_class=1, image_size=96, imagenet_layout=True)
    for arch in ('t0', 't2'):
        write_pretrained(osp.join(root, 'checkpoints', f'partialnet_{arch}_in1k.pth'), arch)
    return root


@pytest.fixture(scope='session')
def user_folder(tmp_path_factory):
    return make_user_folder(str(tmp_path_factory.mktemp('user')))


# ------------------------------------------------------------------ smaller inputs
SIZE_KEYS = ('scale', 'scales', 'img_scale', 'crop_size', 'size')


def _scaled(value, factor):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(32, int(round(value * factor)))
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, factor) for v in value)
    return value


def _shrink(node, factor):
    """Every image size in transform configs under ``node`` times ``factor``."""
    if isinstance(node, dict):
        return {k: (_scaled(v, factor) if k in SIZE_KEYS and 'type' in node
                    else _shrink(v, factor)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_shrink(v, factor) for v in node)
    return node


def shrunk_config(config, factor, folder):
    """``config`` (shipped) with its pipelines' image sizes (and mmseg's batch padding size)
    scaled by ``factor``: a child config that writes out the changed top-level keys."""
    if factor == 1:
        return config
    cfg = Config.fromfile(config)
    changed = {}
    for key, value in cfg.to_dict().items():
        if key == 'model':
            size = value.get('data_preprocessor', {}).get('size')
            if size:
                changed['model'] = dict(data_preprocessor=dict(size=_scaled(size, factor)))
            continue
        new = _shrink(value, factor)
        if new != value:
            changed[key] = new
    assert changed, f'{config}: no image size to shrink'
    child = osp.join(folder, osp.basename(config))
    with open(child, 'w') as f:
        f.write(f'_base_ = [{config!r}]\n')
        f.write(Config(changed).pretty_text)
    return child


# ------------------------------------------------------------------ running the tools
def own_tool(library, name):
    """``<library>/.mim/tools/<name>`` of the installed package."""
    path = osp.join(osp.dirname(importlib.import_module(library).__file__), '.mim', 'tools',
                    name)
    assert osp.isfile(path), f'{library} ships no {name} at {path}'
    return path


def run_subprocess(argv, cwd, timeout=1800):
    """``python argv...`` in a fresh interpreter of this venv, importing partialnet_mm from
    this checkout; returns its output."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, (argv, output[-6000:])
    return output


def library_tool(path):
    """The library's own tool file as a module (its ``main()`` reads ``sys.argv``)."""
    spec = importlib.util.spec_from_file_location(
        'library_tool_' + path.replace(os.sep, '_').replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forget_visualizers():
    """A fresh interpreter's visualizers: mmengine builds a config's visualizer by name
    (``get_instance('visualizer')``), so a second run in one process would log into the first
    run's ``vis_data`` folder."""
    from mmengine.visualization import Visualizer
    classes = [Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()
        classes += cls.__subclasses__()


def run_tool(which, library, name, args, cwd):
    """``tools/<name>.py`` of ours or the library's own ``tools/<name>.py`` with ``args``,
    run from ``cwd`` in this process: what its command line does, minus starting an
    interpreter and importing torch and the libraries again for every run."""
    here, argv, environ = os.getcwd(), sys.argv, dict(os.environ)
    forget_visualizers()
    os.chdir(cwd)
    try:
        if which == 'library':
            path = own_tool(library, f'{name}.py')
            sys.argv = [path, *args]
            library_tool(path).main()
        else:
            load_tool(name).main(list(args))
    finally:
        os.chdir(here)
        sys.argv = argv
        os.environ.clear()  # the libraries' tools set LOCAL_RANK
        os.environ.update(environ)


def records(folder, pattern):
    found = []
    for path in sorted(glob.glob(osp.join(str(folder), pattern))):
        with open(path) as f:
            found += [json.loads(line) for line in f if line.strip()]
    return found


def validation_records(work_dir, key):
    """Every validation record with ``key`` of the runs in ``work_dir``, in order."""
    return [r for r in records(work_dir, '*/vis_data/scalars.json') if key in r]


def metrics_of_test_run(test_dir, key):
    found = [r for r in records(test_dir, '*/*.json') if key in r]
    assert found, f'no {key} in the test logs of {test_dir}'
    return found[-1]


def last_log(work_dir):
    """The text log of the newest run in ``work_dir``."""
    logs = sorted(glob.glob(osp.join(str(work_dir), '*', '*.log')))
    assert logs, f'no run log in {work_dir}'
    with open(logs[-1]) as f:
        return f.read()


def checkpoint_name(step, by_epoch):
    return f'epoch_{step}.pth' if by_epoch else f'iter_{step}.pth'


# ------------------------------------------------------------------ the families
@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_shipped_config_trains_resumes_and_tests_with_both_tool_sets(family, user_folder,
                                                                     tmp_path):
    name, library, metric, shrink, schedule, extra = FAMILIES[family]
    config = shrunk_config(osp.join(ROOT, 'configs', name), shrink, str(tmp_path))
    by_epoch = library != 'mmseg'
    first = FIRST_TOOLS[family]
    second = 'library' if first == 'ours' else 'ours'
    work = str(tmp_path / 'work')

    # the first run: to the first checkpoint and its validation, with mmengine's default
    # max_keep_ckpts (the shipped configs' first save used to crash there)
    run_tool(first, library, 'train', [config, '--work-dir', work, '--cfg-options',
                                       *schedule(1), *extra], user_folder)
    first_ckpt = osp.join(work, checkpoint_name(1, by_epoch))
    assert osp.isfile(first_ckpt), os.listdir(work)
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == first_ckpt
    assert len(validation_records(work, metric)) == 1

    # the second run resumes from it (the newest checkpoint in the work dir) and goes past it
    run_tool(second, library, 'train', [config, '--work-dir', work, '--resume',
                                        '--cfg-options', *schedule(2), *extra], user_folder)
    log = last_log(work)
    assert f'Load checkpoint from {first_ckpt}' in log and 'resumed' in log, log[-3000:]
    last_ckpt = osp.join(work, checkpoint_name(2, by_epoch))
    assert osp.isfile(last_ckpt) and osp.isfile(first_ckpt)  # max_keep_ckpts -1: both kept
    validated = validation_records(work, metric)
    assert len(validated) == 2 and validated[-1]['step'] == 2
    state = torch.load(last_ckpt, map_location='cpu', weights_only=True)
    assert state['meta']['epoch' if by_epoch else 'iter'] == 2
    if family.startswith('rtmdet'):
        # EMA across the resume: its update count runs on from the first run's
        assert int(state['ema_state_dict']['steps']) == state['meta']['iter']
        assert 'Switch pipeline now' in log  # the resumed run switched at its epoch 2
    if family == 'imagenet':
        assert 'Switch' in log and 'train_pipeline' in log  # 224-px crops from epoch 2

    # both tool sets test the last checkpoint: the metrics validation logged for it
    for which in (second, first):
        test_dir = str(tmp_path / f'test_{which}')
        run_tool(which, library, 'test', [config, last_ckpt, '--work-dir', test_dir,
                                          *(['--cfg-options', *extra] if extra else [])],
                 user_folder)
        tested = metrics_of_test_run(test_dir, metric)
        for key, value in validated[-1].items():
            if key.startswith(metric.split('/')[0]) and isinstance(value, float):
                assert tested[key] == pytest.approx(value, abs=1e-6), (which, key)


LAYER_DECAY = ['optim_wrapper.constructor=PartialNetLayerDecayOptimWrapperConstructor',
               'optim_wrapper.paramwise_cfg.layer_decay_rate=0.9']


@pytest.mark.slow
def test_amp_auto_scale_lr_and_layer_decay_train_resume_and_test(user_folder, tmp_path):
    """What the shipped detection configs offer and the demos never run, on Mask R-CNN 1x:
    ``--amp`` (bfloat16 autocast on this CPU), ``--auto-scale-lr`` and layer-wise lr decay.
    Ours trains the first epoch; mmdet's own train.py resumes it (its ``--amp`` builds
    mmengine's GPU-only wrapper, so the AMP wrapper is named as an option there) and tests."""
    config = shrunk_config(osp.join(ROOT, 'configs', 'mask_rcnn_partialnet_t0_coco.py'), 0.25,
                           str(tmp_path))
    work = str(tmp_path / 'work')
    options = [*KEEP_ALL_BOXES['two_stage'], *LAYER_DECAY]
    run_tool('ours', 'mmdet', 'train', [config, '--work-dir', work, '--amp', '--auto-scale-lr',
                                        '--cfg-options', *epochs(1), *options], user_folder)
    assert 'AnyDeviceAmpOptimWrapper' in last_log(work)
    first = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    groups = first['optimizer']['param_groups']
    assert 'loss_scaler' in first['optimizer']
    # --auto-scale-lr: the recipe's lr 2e-4 for 16 images per step, 2 per step here; layer
    # decay: every group's lr is that times 0.9 ** (depth below the top)
    top = max(g['initial_lr'] for g in groups)
    assert top == pytest.approx(2e-4 * 2 / 16)
    steps = sorted({round(math.log(g['initial_lr'] / top, 0.9), 6) for g in groups})
    assert len(steps) > 5 and all(s == int(s) for s in steps), steps

    run_tool('library', 'mmdet', 'train', [
        config, '--work-dir', work, '--resume', '--auto-scale-lr', '--cfg-options', *epochs(2),
        *options, 'optim_wrapper.type=AnyDeviceAmpOptimWrapper'], user_folder)
    last = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu', weights_only=True)
    assert last['meta']['epoch'] == 2 and 'loss_scaler' in last['optimizer']
    assert ([g['initial_lr'] for g in last['optimizer']['param_groups']]
            == [g['initial_lr'] for g in groups])
    validated = validation_records(work, 'coco/segm_mAP')
    assert len(validated) == 2
    test_dir = str(tmp_path / 'test')
    run_tool('ours', 'mmdet', 'test', [config, osp.join(work, 'epoch_2.pth'), '--work-dir',
                                       test_dir, '--cfg-options', *options], user_folder)
    assert metrics_of_test_run(test_dir, 'coco/segm_mAP')['coco/segm_mAP'] == pytest.approx(
        validated[-1]['coco/segm_mAP'], abs=1e-6)


@pytest.mark.slow
@pytest.mark.full_schedule
def test_the_mission_command_on_the_t2_config(tmp_path_factory):
    """README's commands exactly, in a folder with COCO at data/coco and the converted T2
    checkpoint: the whole 12-epoch schedule (on one training image), ``--resume`` and
    ``tools/test.py`` on the last checkpoint."""
    folder = str(tmp_path_factory.mktemp('mission'))
    make_coco_demo(osp.join(folder, 'data', 'coco'), num_train=1, num_val=1,
                   image_size=(240, 320), coco_classes=True)
    write_pretrained(osp.join(folder, 'checkpoints', 'partialnet_t2_in1k.pth'), 't2')
    config = osp.join(ROOT, 'configs', 'mask_rcnn_partialnet_t2_coco.py')
    work = osp.join(folder, 'work_dirs', 'mask_rcnn_partialnet_t2_coco')
    run_subprocess([osp.join(TOOLS, 'train.py'), config], folder)
    assert sorted(os.listdir(work)).count('epoch_12.pth') == 1
    assert all(osp.isfile(osp.join(work, f'epoch_{e}.pth')) for e in range(1, 13))
    log = run_subprocess([osp.join(TOOLS, 'train.py'), config, '--resume'], folder)
    assert 'resumed' in log.lower() and 'epoch_12.pth' in log
    log = run_subprocess([osp.join(TOOLS, 'test.py'), config, osp.join(work, 'epoch_12.pth')],
                         folder)
    # the shipped evaluator ran (bbox and segm) on the one validation image
    assert 'Evaluating bbox' in log or 'testing results of the whole dataset is empty' in log
