"""Test-time augmentation: enable_tta does to a config what mmdet's / mmseg's test.py --tta
do; a Runner built from a demo config with it tests with the libraries' TTA models."""
import os.path as osp

import pytest
from conftest import ROOT, data_root_options
from mmengine.config import Config

from partialnet_mm.runner.tta import TTAConfigError, enable_tta
from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo


def config(name):
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def test_enable_tta_wraps_the_model_and_swaps_the_test_pipeline():
    cfg = config('retinanet_partialnet_t0_coco.py')
    model, tta_pipeline = cfg.model.copy(), cfg.tta_pipeline
    assert enable_tta(cfg) is cfg
    assert cfg.model.type == 'DetTTAModel' and cfg.model.tta_cfg.max_per_img == 100
    assert cfg.model.module == model
    assert cfg.test_dataloader.dataset.pipeline == tta_pipeline
    views = cfg.test_dataloader.dataset.pipeline[1].transforms
    assert [len(v) for v in views] == [3, 2, 1, 1]  # 3 scales x (flip, no flip)
    with pytest.raises(TTAConfigError, match='on already'):
        enable_tta(cfg)


def test_segmentors_take_tta_from_mmseg_bases():
    cfg = enable_tta(config('upernet_partialnet_s_ade20k.py'))
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_a_config_without_tta_settings_is_refused_with_the_fix():
    cfg = config('mask_rcnn_partialnet_t0_coco.py')
    with pytest.raises(TTAConfigError) as error:
        enable_tta(cfg)
    message = str(error.value)
    assert 'no tta_model and no tta_pipeline' in message
    assert 'merges boxes only' in message and 'retinanet_partialnet' in message
    assert cfg.model.type == 'MaskRCNN'  # untouched


def test_det_tta_on_a_mask_predicting_model_is_refused():
    cfg = config('mask_rcnn_partialnet_t0_coco.py')
    retinanet = config('retinanet_partialnet_t0_coco.py')
    cfg.tta_model, cfg.tta_pipeline = retinanet.tta_model, retinanet.tta_pipeline
    with pytest.raises(TTAConfigError, match='MaskRCNN predicts instance masks'):
        enable_tta(cfg)


def run_tta_test(config_name, options, work_dir):
    from mmengine.runner import Runner
    cfg = config(osp.join('demo', config_name))
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    cfg.model.backbone.init_cfg = None
    enable_tta(cfg)
    runner = Runner.from_cfg(cfg)
    batch = next(iter(runner.test_dataloader))
    return runner, batch, runner.test()


@pytest.mark.slow
def test_runner_tests_retinanet_demo_with_det_tta(tmp_path):
    from mmdet.models import DetTTAModel
    root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(root, num_train=1, num_val=2)
    options = data_root_options(root, root + 'annotations/instances_val2017.json')
    options = dict(o.split('=', 1) for o in options)
    # a fresh RetinaNet scores every box at its 0.01 prior: keep them, so that the merged
    # boxes reach the COCO evaluation
    options.update({'test_dataloader.batch_size': 2, 'model.test_cfg.score_thr': 0.0})
    runner, batch, metrics = run_tta_test('retinanet_partialnet_t0_demo.py', options,
                                          tmp_path / 'work')
    assert isinstance(runner.model, DetTTAModel)
    assert len(batch['inputs']) == 6  # 3 scales x 2 flips, each a batch of the 2 images
    flips = [samples[0].flip for samples in batch['data_samples']]
    assert sorted(flips) == [False] * 3 + [True] * 3
    assert 'coco/bbox_mAP' in metrics and metrics['coco/bbox_mAP'] >= 0


@pytest.mark.slow
def test_runner_tests_upernet_demo_with_seg_tta(tmp_path):
    from mmseg.models import SegTTAModel
    root = str(tmp_path / 'ade20k_demo')
    make_ade20k_demo(root, num_train=1, num_val=1)
    options = dict(o.split('=', 1) for o in data_root_options(root))
    runner, batch, metrics = run_tta_test('upernet_partialnet_t0_demo.py', options,
                                          tmp_path / 'work')
    assert isinstance(runner.model, SegTTAModel)
    scales = {tuple(samples[0].img_shape) for samples in batch['data_samples']}
    assert len(batch['inputs']) == 12 and len(scales) == 6  # mmseg's 6 ratios x 2 flips
    assert 'mIoU' in metrics and 0 <= metrics['mIoU'] <= 100


@pytest.mark.slow
def test_test_with_tta_for_a_segmentor_checkpoint(tmp_path):
    """What tools/test.py --tta runs: the checkpoint loads into the wrapped model."""
    import torch
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    from partialnet_mm.apis import test as run_test
    root = str(tmp_path / 'ade20k_demo')
    make_ade20k_demo(root, num_train=1, num_val=1)
    demo = osp.join('demo', 'upernet_partialnet_t0_demo.py')
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(config(demo).model)
    torch.save(dict(state_dict=model.state_dict(), meta={}), tmp_path / 'ckpt.pth')
    metrics = run_test(osp.join(ROOT, 'configs', demo), str(tmp_path / 'ckpt.pth'),
                       str(tmp_path / 'work'), cfg_options=data_root_options(root), tta=True)
    assert 'mIoU' in metrics
