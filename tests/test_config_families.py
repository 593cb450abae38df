"""RetinaNet, Mask R-CNN 3x, Cascade Mask R-CNN 3x and UperNet configs for every variant: the
recipe each states, built through the library's registry, one loss and one predict pass."""
import copy
import os.path as osp

import pytest
import torch
from conftest import ROOT, fewer_rois
from mmengine.config import Config

from partialnet_mm import partialnet_channels
from partialnet_mm.models import ARCH_SETTINGS

ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
DETECTION_FAMILIES = {
    'retinanet_partialnet_{}_coco.py': ('RetinaNet', (1, 2, 3)),
    'mask_rcnn_partialnet_{}_ms_3x_coco.py': ('MaskRCNN', (0, 1, 2, 3)),
    'cascade_mask_rcnn_partialnet_{}_ms_3x_coco.py': ('CascadeRCNN', (0, 1, 2, 3)),
}
PROJECT_HOOKS = [dict(type='RandomStateHook'), dict(type='NonFiniteLossHook')]


def config_path(pattern, arch):
    return osp.join(ROOT, 'configs', pattern.format(arch))


def assert_project_settings(cfg, arch):
    """What every PartialNet config keeps: our package imported, hooks, pretrained backbone."""
    assert cfg.custom_imports['imports'] == ['partialnet_mm']
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert [dict(h) for h in cfg.custom_hooks] == PROJECT_HOOKS
    backbone = cfg.model.backbone
    assert backbone.type == 'PartialNet' and backbone.arch == arch
    assert backbone.init_cfg == dict(type='PartialNetPretrained', prefix='backbone.',
                                     checkpoint=f'checkpoints/partialnet_{arch}_in1k.pth')
    assert backbone.drop_path_rate == ARCH_SETTINGS[arch]['drop_path_rate']


def build_model(cfg, scope, adapt=lambda model_cfg: model_cfg):
    """The config's model without its pretrained weights (none are downloaded in tests);
    ``adapt`` changes a copy of the model config first."""
    from mmengine.registry import MODELS, DefaultScope
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(adapt(copy.deepcopy(cfg.model)))
    model.init_weights()
    return model


def loss_total(losses):
    total = 0
    for name, value in losses.items():
        if 'loss' in name:
            total = total + (sum(value) if isinstance(value, (list, tuple)) else value)
    return total


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('pattern', sorted(DETECTION_FAMILIES))
def test_detection_config_states_the_recipe_builds_and_runs(pattern, arch):
    from mmdet.testing import demo_mm_inputs

    detector_type, out_indices = DETECTION_FAMILIES[pattern]
    cfg = Config.fromfile(config_path(pattern, arch))
    assert_project_settings(cfg, arch)
    assert cfg.model.type == detector_type
    assert tuple(cfg.model.backbone.out_indices) == out_indices
    assert cfg.model.neck.in_channels == partialnet_channels(arch, out_indices)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 2e-4, 1e-4)
    assert 'momentum' not in optimizer  # the base's SGD settings are gone, not merged in
    assert cfg.optim_wrapper.paramwise_cfg == dict(
        norm_decay_mult=0., custom_keys={'.bias_table': dict(decay_mult=0.)})
    if '3x' in pattern:
        assert cfg.train_cfg.max_epochs == 36
        assert cfg.param_scheduler[1].milestones == [27, 33]
        resize = cfg.train_dataloader.dataset.pipeline[3]
        assert resize.type == 'RandomChoice'  # multi-scale: random scale, or crop then scale
        assert len(resize.transforms[0][0].scales) == 11
    else:
        assert cfg.train_cfg.max_epochs == 12
        assert cfg.tta_model.type == 'DetTTAModel'

    model = build_model(cfg, 'mmdet', fewer_rois)
    with_mask = detector_type != 'RetinaNet'
    packed = demo_mm_inputs(1, [[3, 128, 160]], num_items=[3], num_classes=80,
                            with_mask=with_mask)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    expected = ['loss_cls', 'loss_bbox'] if not with_mask else ['loss_rpn_cls', 'loss_mask']
    for key in expected:
        assert any(name.endswith(key) for name in losses), (key, sorted(losses))
    total = loss_total(losses)
    assert torch.isfinite(total) and total > 0
    total.backward()
    stem_grad = model.backbone.stem.conv.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0  # the loss reaches the backbone
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 1 and 'bboxes' in results[0].pred_instances
    assert ('masks' in results[0].pred_instances) == with_mask


@pytest.mark.parametrize('arch', ARCHS)
def test_upernet_config_states_the_recipe_builds_and_runs(arch):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    cfg = Config.fromfile(config_path('upernet_partialnet_{}_ade20k.py', arch))
    assert_project_settings(cfg, arch)
    channels = partialnet_channels(arch)
    assert cfg.model.decode_head.type == 'UPerHead'
    assert cfg.model.decode_head.in_channels == channels
    assert cfg.model.auxiliary_head.in_channels == channels[cfg.model.auxiliary_head.in_index]
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 150
    assert cfg.model.backbone.norm_cfg.type == cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.crop_size == (512, 512) and cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.train_cfg.max_iters == 160000 and cfg.param_scheduler[-1].end == 160000
    assert cfg.train_dataloader.batch_size * 8 == 16
    assert cfg.tta_model.type == 'SegTTAModel' and cfg.tta_pipeline

    model = build_model(cfg, 'mmseg')
    size, batch = 128, 2  # batch 2: UperNet's 1x1 pooling branch has BatchNorm
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, size, size),
                                                         generator=generator))
        samples.append(sample)
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                                    generator=generator))
    packed = dict(inputs=inputs, data_samples=samples)
    model.data_preprocessor.size = (size, size)  # the 512 crop padding is not needed here
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = losses['decode.loss_ce'] + losses['aux.loss_ce']
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, size, size)
