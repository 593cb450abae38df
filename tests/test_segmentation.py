"""Semantic FPN with PartialNet on ADE20K: real configs build and run; the demo trains and reloads."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import ROOT, data_root_options, train_and_retest
from mmengine.config import Config

from partialnet_mm import partialnet_channels
from partialnet_mm.tooling import learning_benchmark as lb
from partialnet_mm.tooling.demo_data import ADE_CLASSES, make_ade20k_demo

ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'fpn_partialnet_t0_demo.py')


def seg_inputs(batch, height, width, num_classes, seed=0):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width), pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, height, width), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('arch', ARCHS)
def test_real_config_builds_and_runs(arch):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'fpn_partialnet_{arch}_ade20k.py'))
    assert cfg.custom_imports['imports'] == ['partialnet_mm']
    assert cfg.model.neck.in_channels == partialnet_channels(arch)
    assert cfg.model.decode_head.num_classes == 150
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.param_scheduler[0].type == 'PolyLR' and cfg.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size * 8 == 32 and cfg.crop_size == (512, 512)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    packed = seg_inputs(2, 128, 128, 150)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 128, 128)


def test_demo_label_maps_follow_ade20k_convention(tmp_path):
    import cv2
    root = str(tmp_path / 'ade')
    make_ade20k_demo(root, num_train=2, num_val=1)
    label = cv2.imread(osp.join(root, 'annotations', 'training',
                                'ADE_demo_training_000000.png'), cv2.IMREAD_UNCHANGED)
    values = set(np.unique(label).tolist())
    assert 0 in values  # "other": thin boundary bands, ignored after reduce_zero_label
    assert values <= set(range(len(ADE_CLASSES) + 1)) and 1 in values


@pytest.mark.slow
def test_demo_trains_validates_and_reloads(tmp_path):
    data_root = str(tmp_path / 'ade20k_demo')
    make_ade20k_demo(data_root, num_train=8, num_val=4)
    options = data_root_options(data_root) + [
        'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
        'default_hooks.checkpoint.interval=4', 'train_dataloader.batch_size=2',
        'randomness.seed=0']
    metrics, predictions = train_and_retest(DEMO_CONFIG, tmp_path / 'work', options,
                                            ['mIoU', 'aAcc', 'mAcc'], tmp_path)
    assert len(predictions) == 4
    for p in predictions:  # real label maps at the image's size, in the class range
        seg = p['pred_sem_seg']['data']
        assert seg.shape[-2:] == (256, 256)
        assert 0 <= seg.min() and seg.max() < len(ADE_CLASSES)


# the seg demo for two iterations that leave the backbone as it was loaded
TWO_ITERATIONS_AT_LR_0 = ['train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
                          'train_dataloader.batch_size=2', 'optim_wrapper.optimizer.lr=0.0',
                          'randomness.seed=0']


@pytest.mark.slow
def test_learning_benchmark_starts_from_a_classifier_backbone(tmp_path):
    """seg (and det) demos in the learning benchmark start from the cls demo's backbone."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cls_cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_demo.py'))
    classifier = MODELS.build(cls_cfg.model)
    classifier.init_weights()
    cls_ckpt = str(tmp_path / 'classifier.pth')
    torch.save(dict(state_dict=classifier.state_dict(), meta=dict()), cls_ckpt)

    data_root = str(tmp_path / 'ade20k_demo')
    make_ade20k_demo(data_root, num_train=4, num_val=2)
    (record, ) = lb.run_tasks(['seg'], dict(seg=str(tmp_path / 'bench')),
                              dict(seg=TWO_ITERATIONS_AT_LR_0), dict(seg=data_root),
                              backbone_from=cls_ckpt)
    assert record['backbone_from'] == cls_ckpt
    trained = torch.load(record['checkpoint'], map_location='cpu')['state_dict']
    for key in ('stem.conv.weight', 'stages.3.blocks.0.mlp.fc2.weight'):  # lr 0: unchanged
        torch.testing.assert_close(trained['backbone.' + key],
                                   classifier.state_dict()['backbone.' + key])


@pytest.mark.slow
def test_learning_benchmark_hands_the_classifier_it_trains_to_seg(tmp_path):
    """cls runs first in one call (whatever the order asked) and seg starts from its checkpoint,
    with the pre-training minutes added to its own."""
    from partialnet_mm.tooling.demo_data import make_imagenet_demo
    roots = dict(cls=str(tmp_path / 'imagenet_demo'), seg=str(tmp_path / 'ade20k_demo'))
    make_imagenet_demo(roots['cls'], num_train_per_class=4, num_val_per_class=2)
    make_ade20k_demo(roots['seg'], num_train=4, num_val=2)
    options = dict(
        cls=['train_cfg.max_epochs=1', 'train_dataloader.batch_size=8', 'randomness.seed=0'],
        seg=TWO_ITERATIONS_AT_LR_0)
    cls_rec, seg_rec = lb.run_tasks(['seg', 'cls'], {t: str(tmp_path / t) for t in roots},
                                    options, roots)
    assert (cls_rec['task'], seg_rec['task']) == ('cls', 'seg')
    assert cls_rec['backbone_from'] is None and seg_rec['backbone_from'] == cls_rec['checkpoint']
    assert seg_rec['train_minutes'] > cls_rec['train_minutes'] > 0
    pretrained = torch.load(cls_rec['checkpoint'], map_location='cpu')['state_dict']
    trained = torch.load(seg_rec['checkpoint'], map_location='cpu')['state_dict']
    for key in ('backbone.stem.conv.weight', 'backbone.stages.3.blocks.0.mlp.fc2.weight'):
        torch.testing.assert_close(trained[key], pretrained[key])  # lr 0: as cls left it
    with pytest.raises(ValueError, match='exclude each other'):
        lb.run_tasks(['seg'], {}, backbone_from=cls_rec['checkpoint'], from_scratch=True)
