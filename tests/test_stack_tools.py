"""The stack's own tools that walk or rewrite our modules keep what the model computes.

mmcv's ``fuse_conv_bn`` is what mmdet's ``tools/analysis_tools/benchmark.py --fuse-conv-bn``
calls: on the freshly built model, still in training mode, then ``eval()`` (that tool itself
needs CUDA, so the tests make its calls). mmdeploy calls ``backbone.switch_to_deploy()``
before ``model.eval()``.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from conftest import ROOT, assert_outputs_close, randomize_inference_state
from mmcv.cnn import fuse_conv_bn
from mmengine.structures import InstanceData
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm import PartialNet, switch_to_deploy
from partialnet_mm.analysis import build_config_model
from partialnet_mm.models.archs import ARCH_SETTINGS
from partialnet_mm.runner import load_config

FUSED_RTOL = 1e-5  # max |after - before| <= FUSED_RTOL * max |before|, per output


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def count_norms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def benchmark_fuse(model: nn.Module) -> nn.Module:
    """What mmdet's benchmark does with ``--fuse-conv-bn``: fuse the model as built (training
    mode), then switch it to eval mode."""
    assert model.training
    return fuse_conv_bn(model).eval()


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_fuse_conv_bn_keeps_every_variant(arch):
    torch.manual_seed(0)
    model = randomize_inference_state(PartialNet(arch=arch), seed=1)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(x)
        norms = count_norms(model)
        fused = benchmark_fuse(model)
        got = fused(x)
        # mmcv did fold (the stem, merging layers and MLP norms), so the test exercises it
        assert count_norms(fused) < norms
        assert_outputs_close(got, expected, FUSED_RTOL, f'{arch} after fuse_conv_bn')
        # our own folding still applies on top of mmcv's
        folded = switch_to_deploy(fused)
        assert count_norms(folded) == len(folded.out_indices)  # only the output norms stay
        assert_outputs_close(folded(x), expected, FUSED_RTOL,
                             f'{arch} after fuse_conv_bn and switch_to_deploy')


def build_from_config(name: str) -> nn.Module:
    cfg = load_config(osp.join(ROOT, 'configs', name))
    model = build_config_model(cfg).train()  # as MODELS.build returns it
    return randomize_inference_state(model, seed=2)


def detector_tensors(model, inputs):
    """Every tensor a two-stage detector computes from ``inputs`` before post-processing:
    backbone+FPN features and the RoI head's outputs for fixed proposals."""
    feats = model.extract_feat(inputs)
    height, width = inputs.shape[-2:]
    g = torch.Generator().manual_seed(3)
    corners = torch.rand(32, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
    sizes = torch.rand(32, 2, generator=g) * torch.tensor([width * 0.4, height * 0.4]) + 8
    proposals = InstanceData(bboxes=torch.cat((corners, corners + sizes), dim=1))
    rpn = model.rpn_head(feats)
    roi = model.roi_head.forward(feats, [proposals])
    return [*feats, *[t for level in rpn for t in level], *roi]


@pytest.mark.parametrize('config, kind', [
    ('mask_rcnn_partialnet_t2_coco.py', 'detector'),
    ('fpn_partialnet_t1_ade20k.py', 'segmentor'),
    ('partialnet_t0_imagenet.py', 'classifier')])
def test_fuse_conv_bn_keeps_models_built_from_configs(config, kind):
    torch.manual_seed(0)
    model = build_from_config(config)
    if kind == 'detector':
        inputs = torch.randn(1, 3, 192, 256)
        outputs = lambda m: detector_tensors(m, inputs)  # noqa: E731
    elif kind == 'segmentor':
        inputs = torch.randn(1, 3, 128, 128)
        outputs = lambda m: [m(inputs, mode='tensor')]  # noqa: E731
    else:
        inputs = torch.randn(2, 3, 224, 224)
        outputs = lambda m: [m(inputs, mode='tensor')]  # noqa: E731
    with torch.no_grad():
        expected = outputs(copy.deepcopy(model).eval())
        norms = count_norms(model)
        fused = benchmark_fuse(model)
        assert count_norms(fused) < norms
        assert_outputs_close(outputs(fused), expected, FUSED_RTOL,
                             f'{config} after fuse_conv_bn')


def test_switch_to_deploy_in_mmdeploys_order():
    """mmdeploy's ``BaseTask.build_pytorch_model``: load weights, ``switch_to_deploy()`` on the
    backbone in training mode, then ``model.eval()``."""
    model = randomize_inference_state(PartialNet(arch='t1'), seed=4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(x)
        assert model.training
        model.switch_to_deploy()
        assert not model.training  # the folded backbone only infers
        assert not any(m.training for m in model.modules())
        assert_outputs_close(model.eval()(x), expected, FUSED_RTOL, 'switched in train mode')
    with pytest.raises(RuntimeError, match='cannot be trained'):
        model.train()
    detector = nn.Module()
    detector.backbone = model
    with pytest.raises(RuntimeError, match='cannot be trained'):
        detector.train()  # a parent's train() reaches the folded backbone
