"""PartialNet classifiers in mmpretrain: real configs build and run; the demo trains and reloads."""
import os.path as osp

import pytest
import torch
from conftest import ROOT, data_root_options, train_and_retest
from mmengine.config import Config

from partialnet_mm import PartialNet
from partialnet_mm.apis import train
from partialnet_mm.runner import parse_cfg_options
from partialnet_mm.tooling import learning_benchmark as lb
from partialnet_mm.tooling.demo_data import SHAPES, make_imagenet_demo

RECIPES = {  # arch: (weight decay, grad clip, mixup alpha, RandAugment magnitude)
    't0': (0.005, None, 0.05, None), 't1': (0.01, None, 0.1, 3), 't2': (0.02, None, 0.1, 5),
    's': (0.03, None, 0.3, 7), 'm': (0.05, 1.0, 0.5, 7), 'l': (0.05, 0.01, 0.7, 7)}
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_demo.py')


@pytest.mark.parametrize('arch', sorted(RECIPES))
def test_real_config_has_the_authors_recipe_and_runs(arch):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'partialnet_{arch}_imagenet.py'))
    wd, clip, mixup, magnitude = RECIPES[arch]
    assert cfg.optim_wrapper.optimizer.weight_decay == wd
    assert cfg.optim_wrapper.get('clip_grad') == (None if clip is None else dict(max_norm=clip))
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=mixup),
                                            dict(type='CutMix', alpha=1.0)]
    augments = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandAugment']
    assert [t.magnitude_level for t in augments] == ([] if magnitude is None else [magnitude])
    assert cfg.optim_wrapper.type == 'AnyDeviceAmpOptimWrapper' and cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.optim_wrapper.optimizer.lr == 0.004 and cfg.train_cfg.max_epochs == 300
    # the last 20 of 300 epochs at 224 px with this variant's own pipeline (mmpretrain's
    # SwitchRecipeHook counts epochs from 1), then the project's hooks
    switch, *project = cfg.custom_hooks
    assert switch.type == 'SwitchRecipeHook' and len(switch.schedule) == 1
    assert switch.schedule[0].action_epoch == 281
    final = switch.schedule[0].train_pipeline
    assert [t.type for t in final] == [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert [t.scale for t in final if t.type == 'RandomResizedCrop'] == [224]
    assert [t.scale for t in cfg.train_pipeline if t.type == 'RandomResizedCrop'] == [192]
    assert [h.type for h in project] == ['RandomStateHook', 'NonFiniteLossHook']

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    # drop path is the arch's own rate (the authors' table), reached at the last block
    last_block = model.backbone.stages[-1].blocks[-1]
    assert getattr(last_block.drop_path, 'drop_prob', 0.) == pytest.approx(
        PartialNet.arch_settings[arch]['drop_path_rate'])
    assert model.head.fc.out_features == 1000
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(3), DataSample().set_gt_label(7)]
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    model.train()
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss'])
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(dict(inputs=inputs, data_samples=samples)),
                      mode='predict')
    assert preds[0].pred_score.shape == (1000, )


def test_head_refuses_an_activation_that_does_not_build():
    from mmengine.registry import DefaultScope

    from partialnet_mm import PartialNetClsHead
    with DefaultScope.overwrite_default_scope('mmpretrain'), pytest.raises(ValueError, match=r"^PartialNetClsHead act_cfg \{'type': 'RELU'\} does "
                       r"not build an activation.*dict\(type='ReLU', inplace=True\)"):
        PartialNetClsHead(num_classes=10, in_channels=256, act_cfg=dict(type='RELU'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # its loss: mmpretrain's
        assert isinstance(PartialNetClsHead(num_classes=10, arch='t2').act, torch.nn.ReLU)


@pytest.mark.slow
def test_final_crop_switch_happens_at_its_epoch(tmp_path):
    """The demo's 64 -> 72 px switch (the recipe's 192 -> 224), moved to the 2nd epoch."""
    import glob
    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=2, num_val_per_class=1)
    cfg = Config.fromfile(DEMO_CONFIG)
    hooks = cfg.custom_hooks  # the demo's own, its switch moved to the 2nd epoch
    hooks[0].schedule[0].action_epoch = 2
    options = parse_cfg_options(data_root_options(data_root) + [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2', 'train_dataloader.batch_size=8'])
    train(DEMO_CONFIG, str(tmp_path / 'work'), cfg_options=dict(options, custom_hooks=hooks))
    with open(glob.glob(str(tmp_path / 'work' / '*' / '*.log'))[0]) as f:
        log = f.read()
    assert 'Switch train pipeline at epoch 2' in log
    assert log.index('Epoch(train) [1]') < log.index('Switch train pipeline at epoch 2') < \
        log.index('Epoch(train) [2]')


@pytest.mark.slow
def test_demo_trains_validates_and_reloads(tmp_path):
    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=4, num_val_per_class=2)
    options = data_root_options(data_root) + [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=8',
        'randomness.seed=0']
    metrics, predictions = train_and_retest(DEMO_CONFIG, tmp_path / 'work', options,
                                            ['accuracy/top1'], tmp_path)
    assert 0 <= metrics['accuracy/top1'] <= 100
    assert len(predictions) == 2 * len(SHAPES)
    for p in predictions:  # real scores for the demo classes
        assert p['pred_score'].shape == (len(SHAPES), )
        assert torch.allclose(p['pred_score'].sum(), torch.tensor(1.), atol=1e-4)


@pytest.mark.slow
def test_learning_benchmark_reports_the_reloaded_checkpoint_against_its_target(tmp_path):
    import json
    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=4, num_val_per_class=2)
    work_dir = str(tmp_path / 'bench')
    options = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=8', 'randomness.seed=0']
    (record, ) = lb.run_tasks(['cls'], dict(cls=work_dir), dict(cls=options),
                              dict(cls=data_root))
    with open(lb.write_report([record], work_dir)) as f:
        report = json.load(f)
    assert report['records'] == [json.loads(json.dumps(record))]
    top1 = record['metrics']['accuracy/top1']
    assert 0 <= top1 <= 100 and record['targets'] == {'accuracy/top1': 90.0}
    assert record['passed'] == (top1 >= 90.0)
    assert record['checkpoint'].endswith('epoch_1.pth') and record['train_minutes'] > 0
    assert 'CPU' in report['machine'] and 'threads' in report['machine']
