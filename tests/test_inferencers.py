"""The libraries' own inference APIs on our demo configs: mmdet's DetInferencer, mmseg's
MMSegInferencer and mmpretrain's ImageClassificationInferencer, on an image file and on a
numpy array, with their drawings written to an output folder and returned."""
import glob
import importlib
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT
from mmengine.config import Config
from mmengine.registry import DefaultScope

from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo, make_imagenet_demo


def demo_config(name):
    return osp.join(ROOT, 'configs', 'demo', name)


def save_fresh_checkpoint(config, data_root, scope, path):
    """A checkpoint of the config's freshly initialised model as the Runner writes one: the
    state dict and ``meta.dataset_meta`` (class names, palette), which the inferencers read
    to name and colour what they draw."""
    registries = importlib.import_module(f'{scope}.registry')
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': data_root})
    with DefaultScope.overwrite_default_scope(scope):
        model = registries.MODELS.build(cfg.model)
        model.init_weights()
        dataset_meta = registries.DATASETS.build(cfg.test_dataloader.dataset).metainfo
    torch.manual_seed(0)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dataset_meta)), path)
    return dataset_meta


def rgb(path):
    return cv2.imread(path)[..., ::-1]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco') / 'coco_demo') + '/'
    make_coco_demo(root, num_train=1, num_val=1)
    return root


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade') / 'ade20k_demo')
    make_ade20k_demo(root, num_train=1, num_val=1)
    return root


@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('imagenet') / 'imagenet_demo')
    make_imagenet_demo(root, num_train_per_class=1, num_val_per_class=1)
    return root


@pytest.mark.parametrize('config,with_masks', [
    ('mask_rcnn_partialnet_t0_demo.py', True),
    ('retinanet_partialnet_t0_demo.py', False),
])
def test_det_inferencer_on_file_and_array_draws_results(config, with_masks, coco_root,
                                                        tmp_path):
    from mmdet.apis import DetInferencer
    weights = str(tmp_path / 'model.pth')
    meta = save_fresh_checkpoint(demo_config(config), coco_root, 'mmdet', weights)
    cfg = Config.fromfile(demo_config(config))
    if not with_masks:
        # a freshly initialised RetinaNet scores every box at its 0.01 prior, under the
        # config's 0.05 test threshold
        cfg.model.test_cfg.score_thr = 0.
    inferencer = DetInferencer(model=cfg, weights=weights, device='cpu')
    assert inferencer.model.dataset_meta['classes'] == meta['classes']
    image = glob.glob(osp.join(coco_root, 'val2017', '*.jpg'))[0]
    # a freshly initialised model's scores are low: draw every box (threshold 0)
    from_file = inferencer(image, out_dir=str(tmp_path / 'file'), return_vis=True,
                           pred_score_thr=0.)
    from_array = inferencer(cv2.imread(image), out_dir=str(tmp_path / 'array'),
                            return_vis=True, pred_score_thr=0.)
    for result in (from_file, from_array):
        prediction = result['predictions'][0]
        assert len(prediction['bboxes']) == len(prediction['scores']) > 0
        assert ('masks' in prediction) == with_masks
        assert max(prediction['labels']) < len(meta['classes'])
        drawn = result['visualization'][0]
        assert drawn.shape == rgb(image).shape and (drawn != rgb(image)).any()
    np.testing.assert_allclose(from_file['predictions'][0]['bboxes'],  # same image, same boxes
                               from_array['predictions'][0]['bboxes'], atol=1e-3)
    written = glob.glob(str(tmp_path / 'file' / 'vis' / '*.jpg'))
    assert [osp.basename(p) for p in written] == [osp.basename(image)]
    assert glob.glob(str(tmp_path / 'array' / 'vis' / '*.jpg'))


@pytest.mark.parametrize('config', ['upernet_partialnet_t0_demo.py', 'fpn_partialnet_t0_demo.py'])
def test_mmseg_inferencer_on_file_and_array_draws_results(config, ade_root, tmp_path):
    from mmseg.apis import MMSegInferencer
    weights = str(tmp_path / 'model.pth')
    meta = save_fresh_checkpoint(demo_config(config), ade_root, 'mmseg', weights)
    inferencer = MMSegInferencer(model=demo_config(config), weights=weights, device='cpu')
    assert tuple(inferencer.model.dataset_meta['classes']) == meta['classes']
    # mmseg's inferencer draws with Cityscapes names and colours unless given others; the
    # checkpoint's are on the model (docs/inference.md)
    inferencer.visualizer.set_dataset_meta(**inferencer.model.dataset_meta)
    assert tuple(inferencer.visualizer.dataset_meta['classes']) == meta['classes']
    image = glob.glob(osp.join(ade_root, 'images', 'validation', '*.jpg'))[0]
    from_file = inferencer(image, out_dir=str(tmp_path / 'file'), return_vis=True)
    from_array = inferencer(cv2.imread(image), out_dir=str(tmp_path / 'array'),
                            return_vis=True)
    for result in (from_file, from_array):
        labels = result['predictions']
        assert labels.shape == rgb(image).shape[:2]
        assert labels.min() >= 0 and labels.max() < len(meta['classes'])
        drawn = result['visualization']
        assert drawn.shape == rgb(image).shape and (drawn != rgb(image)).any()
    np.testing.assert_array_equal(from_file['predictions'], from_array['predictions'])
    assert glob.glob(str(tmp_path / 'file' / 'vis' / '*.jpg'))
    assert glob.glob(str(tmp_path / 'file' / 'pred' / '*.png'))
    assert glob.glob(str(tmp_path / 'array' / 'vis' / '*.jpg'))


def test_image_classification_inferencer_on_file_and_array_draws_results(imagenet_root,
                                                                         tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer
    config = demo_config('partialnet_t0_imagenet_demo.py')
    weights = str(tmp_path / 'model.pth')
    meta = save_fresh_checkpoint(config, imagenet_root, 'mmpretrain', weights)
    image = glob.glob(osp.join(imagenet_root, 'val', 'circle', '*.jpg'))[0]
    # mmpretrain builds the test pipeline in the process's current default scope; another
    # library's inferencer used before in the same process (as in this test session) has set
    # its own, so the scope is made mmpretrain's for this block
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(model=config, pretrained=weights,
                                                   device='cpu')
        # mmpretrain's inferencer writes its drawings to show_dir (it returns predictions only)
        from_file = inferencer(image, show_dir=str(tmp_path / 'file'))
        from_array = inferencer(cv2.imread(image), show_dir=str(tmp_path / 'array'))
    for result in (from_file, from_array):
        prediction = result[0]
        assert prediction['pred_class'] in meta['classes']
        assert len(prediction['pred_scores']) == len(meta['classes'])
        assert prediction['pred_scores'].sum() == pytest.approx(1, abs=1e-5)
    assert from_file[0]['pred_scores'] == pytest.approx(from_array[0]['pred_scores'], abs=1e-5)
    stem = osp.splitext(osp.basename(image))[0]
    for drawn_file in (tmp_path / 'file' / f'{stem}.png', tmp_path / 'array' / '0.png'):
        drawn = cv2.imread(str(drawn_file))
        assert drawn is not None, f'nothing drawn at {drawn_file}'
        assert drawn.shape == cv2.imread(image).shape
        assert (drawn != cv2.imread(image)).any()  # the class and score written on it
