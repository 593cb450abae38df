"""Faults injected into real runs: each ends in a message that names the problem and the fix,
and nothing that was saved before is lost (the rows of the README's fault table)."""
import errno
import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, data_root_options
from mmengine.fileio.backends import LocalBackend

from partialnet_mm.apis import train
from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.engine import CheckpointSaveError, NonFiniteLossError
from partialnet_mm.runner import DataError
from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo, make_imagenet_demo

CLS_DEMO = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_demo.py')
DET_DEMO = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_demo.py')
SEG_DEMO = osp.join(ROOT, 'configs', 'demo', 'fpn_partialnet_t0_demo.py')

pytestmark = pytest.mark.filterwarnings('ignore:No GPU')


@pytest.fixture(scope='module')
def cls_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cls') / 'imagenet_demo')
    make_imagenet_demo(root, num_train_per_class=2, num_val_per_class=1)
    return root


def cls_options(data_root, epochs=2):
    return data_root_options(data_root) + [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        'train_dataloader.batch_size=8', 'randomness.seed=0']


# ------------------------------------------------------------------ checkpoints
def failing_second_save(monkeypatch, error):
    """Make the second checkpoint write die half-way with ``error``."""
    real_put, calls = LocalBackend.put, []

    def put(self, obj, filepath):
        calls.append(filepath)
        if len(calls) == 2:
            with open(filepath, 'wb') as f:  # a partial file, as a dying write leaves it
                f.write(obj[:len(obj) // 3])
            raise error
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize('error, expected', [
    (OSError(errno.ENOSPC, 'No space left on device'), CheckpointSaveError),
    (KeyboardInterrupt('killed while saving'), KeyboardInterrupt)],
    ids=['disk_full', 'killed'])
def test_a_failed_save_keeps_the_last_good_checkpoint(cls_data, tmp_path, monkeypatch, error,
                                                      expected):
    work = tmp_path / 'work'
    calls = failing_second_save(monkeypatch, error)
    with pytest.raises(expected) as raised:
        train(CLS_DEMO, str(work), cfg_options=cls_options(cls_data) + [
            'default_hooks.checkpoint.max_keep_ckpts=1'])
    assert len(calls) == 2 and calls[1].endswith('.epoch_2.pth.part')
    # the previous checkpoint, kept despite max_keep_ckpts=1, and last_checkpoint naming it;
    # nothing of the failed save
    files = {f for f in os.listdir(work) if osp.isfile(work / f)}
    assert files == {'epoch_1.pth', 'last_checkpoint', 'partialnet_t0_imagenet_demo.py'}
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')
    torch.load(work / 'epoch_1.pth', weights_only=True)
    if expected is CheckpointSaveError:
        message = str(raised.value)
        assert 'epoch_2.pth failed' in message and 'No space left on device' in message
        assert f'previous checkpoint {work / "epoch_1.pth"}' in message
        assert 'last_checkpoint are unchanged' in message and '--resume' in message


@pytest.mark.slow
def test_resume_after_a_failed_save_continues_from_the_last_good_checkpoint(cls_data, tmp_path,
                                                                           monkeypatch):
    work = tmp_path / 'work'
    failing_second_save(monkeypatch, OSError(errno.ENOSPC, 'No space left on device'))
    with pytest.raises(CheckpointSaveError):
        train(CLS_DEMO, str(work), cfg_options=cls_options(cls_data))
    monkeypatch.undo()
    runner = train(CLS_DEMO, str(work), resume='auto', cfg_options=cls_options(cls_data))
    assert runner.epoch == 2 and (work / 'epoch_2.pth').is_file()


@pytest.mark.slow
def test_nan_in_the_first_iteration_after_resume(cls_data, tmp_path):
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(force=True)
    class _PoisonFirstIterAfterResume(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner._resume and runner.iter == 1:  # epoch 1 had 1 iteration
                with torch.no_grad():
                    runner.model.backbone.stem.conv.weight.fill_(float('nan'))

    work = tmp_path / 'work'
    train(CLS_DEMO, str(work), cfg_options=cls_options(cls_data, epochs=1))
    config = tmp_path / 'poisoned.py'
    config.write_text(f"_base_ = [{CLS_DEMO!r}]\ncustom_hooks = [*_base_.custom_hooks, "
                      f"dict(type='_PoisonFirstIterAfterResume')]\n")
    with pytest.raises(NonFiniteLossError) as stop:
        train(str(config), str(work), resume='auto', cfg_options=cls_options(cls_data))
    message = str(stop.value)
    assert 'the loss became nan at iteration 2 (epoch 2)' in message
    assert f'Last good checkpoint: {work / "epoch_1.pth"}' in message
    assert not (work / 'epoch_2.pth').exists()


@pytest.mark.slow
def test_resume_with_a_config_of_another_arch_is_refused(cls_data, tmp_path):
    work = tmp_path / 'work'
    train(CLS_DEMO, str(work), cfg_options=cls_options(cls_data, epochs=1))
    other = tmp_path / 't1.py'
    other.write_text(f"_base_ = [{CLS_DEMO!r}]\n"
                     "model = dict(backbone=dict(arch='t1'), head=dict(arch='t1'))\n")
    with pytest.raises(CheckpointError) as refused:
        train(str(other), str(work), resume='auto', cfg_options=cls_options(cls_data))
    message = str(refused.value)
    assert f'cannot resume from {work / "epoch_1.pth"}' in message
    assert 'its backbone looks like PartialNet-t0' in message
    assert 'shape mismatches' in message and 'Resume with the config the run was trained' in message
    assert not (work / 'epoch_2.pth').exists()


def test_a_missing_pretrained_checkpoint_stops_a_real_config(tmp_path, monkeypatch):
    """COCO in place but no ImageNet weights: the run stops before the first iteration."""
    data_root = str(tmp_path / 'coco') + '/'
    make_coco_demo(data_root, num_train=2, num_val=1)
    monkeypatch.chdir(tmp_path)  # checkpoints/partialnet_t0_in1k.pth does not exist here
    with pytest.raises(CheckpointError) as stop:
        train(osp.join(ROOT, 'configs', 'mask_rcnn_partialnet_t0_coco.py'), 'work',
              cfg_options=data_root_options(data_root,
                                            f'{data_root}annotations/instances_val2017.json')
              + ["train_dataloader.dataset.metainfo.classes=['circle','triangle','rectangle',"
                 "'star']"])
    message = str(stop.value)
    assert "'checkpoints/partialnet_t0_in1k.pth' not found" in message
    assert 'tools/convert_checkpoint.py' in message and 'model.backbone.init_cfg=None' in message
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))


# ------------------------------------------------------------------ data
@pytest.fixture()
def coco(tmp_path):
    root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(root, num_train=3, num_val=1)
    return root


def det_train(coco, tmp_path):
    return train(DET_DEMO, str(tmp_path / 'work'), cfg_options=data_root_options(
        coco, f'{coco}annotations/instances_val2017.json') + ['train_cfg.max_epochs=1'])


def edit_annotations(coco, edit):
    path = osp.join(coco, 'annotations', 'instances_train2017.json')
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


@pytest.mark.parametrize('damage, expected', [
    ('truncated', 'train2017/000002.jpg is truncated'),
    ('missing', 'train2017/000002.jpg is missing'),
])
def test_a_broken_image_is_named_before_training(coco, tmp_path, damage, expected):
    image = osp.join(coco, 'train2017', '000002.jpg')
    if damage == 'missing':
        os.remove(image)
    else:
        data = open(image, 'rb').read()
        open(image, 'wb').write(data[:len(data) // 2])
    with pytest.raises(DataError) as stop:
        det_train(coco, tmp_path)
    message = str(stop.value)
    assert expected in message and 'make_demo_data.py --force' in message
    assert not (tmp_path / 'work').exists() or not glob.glob(str(tmp_path / 'work' / '*.pth'))


@pytest.mark.parametrize('edit, expected', [
    (lambda d: d['annotations'][0].update(category_id=99),
     'annotation id 1 (image id 1): category_id 99 is not one of the file\'s categories '
     '[1, 2, 3, 4]'),
    (lambda d: d['annotations'][0].update(bbox=[200., 10., 120., 30.]),
     'annotation id 1 (image id 1): bbox [200.0, 10.0, 120.0, 30.0] (x, y, w, h) is not inside '
     'the 256x256 image 000000.jpg'),
], ids=['unknown_category', 'box_outside_the_image'])
def test_a_bad_coco_annotation_is_named_before_training(coco, tmp_path, edit, expected):
    path = edit_annotations(coco, edit)
    with pytest.raises(DataError) as stop:
        det_train(coco, tmp_path)
    message = str(stop.value)
    assert path in message and expected in message
    assert 'Fix the annotation file' in message


@pytest.mark.slow
def test_a_label_map_with_values_outside_the_classes_is_named(tmp_path):
    root = str(tmp_path / 'ade20k_demo')
    make_ade20k_demo(root, num_train=2, num_val=1)
    label = osp.join(root, 'annotations', 'training', 'ADE_demo_training_000001.png')
    seg = cv2.imread(label, cv2.IMREAD_UNCHANGED)
    seg[:4, :4] = 9  # classes 1..5 on disk (0 = other)
    cv2.imwrite(label, seg)
    with pytest.raises(DataError) as stop:
        train(SEG_DEMO, str(tmp_path / 'work'), cfg_options=data_root_options(root) + [
            'train_cfg.max_iters=2', 'train_dataloader.batch_size=2'])
    message = str(stop.value)
    assert message.startswith(f'label map {label} has values [8] outside the 5 classes')
    assert 'after reduce_zero_label' in message and 'Fix the label map' in message
    assert 'Traceback' not in message


# ------------------------------------------------------------------ batch size 1
@pytest.mark.parametrize('arch', ['t0', 't1', 't2', 's', 'm', 'l'])
def test_every_variant_trains_with_one_image(arch):
    """PAT_ch's gate norm sees one pooled value per channel: it falls back to its running
    statistics (leaving them unchanged) instead of failing; the rest is ordinary training."""
    from partialnet_mm import PartialNet
    torch.manual_seed(0)
    model = PartialNet(arch=arch).train()
    gate_norm = model.stages[0].blocks[0].spatial_mixing.attn.gate_norm
    before = gate_norm.running_mean.clone()
    sum(o.mean() for o in model(torch.randn(1, 3, 64, 96))).backward()
    assert torch.equal(gate_norm.running_mean, before)
    assert gate_norm.weight.grad is not None and torch.isfinite(gate_norm.weight.grad).all()
    assert model.stem.norm.num_batches_tracked == 1  # the feature-map norms train as usual


def test_batches_of_two_or_more_and_evaluation_are_unchanged_by_the_fallback():
    from partialnet_mm.models.utils.ops import batch_norm_any_batch
    norm = torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 6, 1, 1)
    reference = torch.nn.BatchNorm2d(6)
    reference.load_state_dict(norm.state_dict())
    torch.testing.assert_close(batch_norm_any_batch(norm, x), reference(x), rtol=0, atol=0)
    torch.testing.assert_close(norm.running_mean, reference.running_mean, rtol=0, atol=0)
    norm.eval(), reference.eval()
    torch.testing.assert_close(batch_norm_any_batch(norm, x[:1]), reference(x[:1]))


def test_mask_rcnn_trains_a_step_on_one_image():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(DET_DEMO)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    packed = demo_mm_inputs(1, [[3, 256, 320]], num_items=[2], num_classes=4, with_mask=True)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert np.isfinite(model.backbone.stem.conv.weight.grad.abs().sum().item())


@pytest.mark.slow
def test_outdated_checkpoints_are_deleted_after_the_new_one_is_saved(cls_data, tmp_path):
    work = tmp_path / 'work'
    train(CLS_DEMO, str(work), cfg_options=cls_options(cls_data, epochs=3) + [
        'default_hooks.checkpoint.max_keep_ckpts=2'])
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_2.pth', 'epoch_3.pth']
    assert not list(work.glob('.*.part'))
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_3.pth')
    hub = torch.load(work / 'epoch_3.pth', weights_only=True)['message_hub']
    assert hub['runtime_info']['keep_ckpt_ids'] == [2, 3]
    assert hub['runtime_info']['last_ckpt'] == str(work / 'epoch_3.pth')
