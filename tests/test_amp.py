"""Mixed precision on any device: AnyDeviceAmpOptimWrapper and what our tools do with --amp."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper

from partialnet_mm.engine.amp import AnyDeviceAmpOptimWrapper, amp_device_available
from partialnet_mm.runner import amp_for_device

no_gpu = pytest.mark.skipif(amp_device_available(),
                            reason='what the wrapper does without a GPU (one is here)')


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 1, 1))


def wrapper_for(model, **options):
    return build_optim_wrapper(model, dict(type='AnyDeviceAmpOptimWrapper',
                                           optimizer=dict(type='SGD', lr=0.1), **options))


@no_gpu
def test_on_the_cpu_it_autocasts_to_bfloat16_and_trains():
    model = small_model()
    wrapper = wrapper_for(model, loss_scale='dynamic')
    assert isinstance(wrapper, AmpOptimWrapper)
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 3, 8, 8))
        assert out.dtype == torch.bfloat16  # the convolutions ran under autocast
        loss = out.float().square().mean()
    wrapper.update_params(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@no_gpu
def test_on_the_cpu_its_state_dict_keeps_the_loss_scaler_entry_and_reloads():
    model = small_model()
    wrapper = wrapper_for(model)
    with wrapper.optim_context(model):
        wrapper.update_params(model(torch.randn(1, 3, 8, 8)).float().mean())
    state = wrapper.state_dict()
    assert 'loss_scaler' in state and 'state' in state
    again = wrapper_for(small_model())
    again.load_state_dict(state)
    # a checkpoint written with a GPU's dynamic loss scale loads too (the CPU scales none)
    again.load_state_dict(dict(wrapper.state_dict(), loss_scaler=dict(
        scale=1024.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
        _growth_tracker=0)))


@no_gpu
@pytest.mark.parametrize('options, fix', [
    (dict(dtype='float16'), 'optim_wrapper.dtype=bfloat16'),
    (dict(use_fsdp=True), 'leave optim_wrapper.use_fsdp unset')])
def test_on_the_cpu_what_it_cannot_do_is_refused_with_the_fix(options, fix):
    with pytest.raises(ValueError, match=fix.replace('.', r'\.')):
        wrapper_for(small_model(), **options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_on_a_gpu_it_is_mmengines_amp_wrapper():
    model = small_model().cuda()
    ours = wrapper_for(model, dtype='float16')
    theirs = build_optim_wrapper(model, dict(type='AmpOptimWrapper', dtype='float16',
                                             optimizer=dict(type='SGD', lr=0.1)))
    assert type(ours.loss_scaler) is type(theirs.loss_scaler) and ours.loss_scaler.is_enabled()
    assert ours.cast_dtype == theirs.cast_dtype == torch.float16
    assert ours.state_dict().keys() == theirs.state_dict().keys()


@no_gpu
def test_our_tools_run_a_config_that_names_mmengines_amp_wrapper_on_the_cpu():
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic',
                                         optimizer=dict(type='SGD', lr=0.1))))
    assert amp_for_device(cfg)
    assert cfg.optim_wrapper.type == 'AnyDeviceAmpOptimWrapper'
    assert isinstance(build_optim_wrapper(small_model(), cfg.optim_wrapper),
                      AnyDeviceAmpOptimWrapper)
    plain = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    assert not amp_for_device(plain) and plain.optim_wrapper.type == 'OptimWrapper'


def test_mmcv_ops_run_in_float32_under_cpu_autocast_and_are_restored_after():
    """mmcv's CPU kernels have no bfloat16: inside the wrapper's step they run in float32 and
    hand back bfloat16 (as the CUDA kernels hand back half), gradients included."""
    import sys

    from mmcv.ops import nms, roi_align

    # (mmcv.ops' function names hide its submodules of the same name)
    nms_module, roi_align_module = sys.modules['mmcv.ops.nms'], sys.modules['mmcv.ops.roi_align']
    from partialnet_mm.engine.amp import mmcv_ops_in_float32
    originals = (roi_align_module.roi_align, roi_align_module.RoIAlignFunction.apply,
                 nms_module.NMSop.apply)
    torch.manual_seed(0)
    features = torch.randn(1, 4, 16, 16, requires_grad=True)
    rois = torch.tensor([[0, 1., 1., 8., 8.], [0, 3., 2., 15., 11.]])
    boxes, scores = torch.tensor([[0, 0, 8, 8.], [1, 1, 8, 8.], [9, 9, 15, 15.]]), \
        torch.tensor([0.9, 0.8, 0.7])
    reference = roi_align(features, rois, (7, 7), 1.0, 0, 'avg', True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        with pytest.raises((RuntimeError, NotImplementedError)):  # why the context exists
            roi_align(features.bfloat16(), rois.bfloat16(), (7, 7), 1.0, 0, 'avg', True)
    with mmcv_ops_in_float32('cpu'), torch.autocast('cpu', dtype=torch.bfloat16):
        pooled = roi_align_module.roi_align(features.bfloat16(), rois.bfloat16(), (7, 7), 1.0,
                                            0, 'avg', True)
        _, kept = nms(boxes.bfloat16(), scores.bfloat16(), 0.5)
    assert pooled.dtype == torch.bfloat16 and kept.tolist() == [0, 2]
    assert torch.allclose(pooled.float(), reference, atol=0.05)
    pooled.float().sum().backward()  # the op's own backward, after the context, in float32
    assert features.grad.dtype == torch.float32 and features.grad.abs().sum() > 0
    assert (roi_align_module.roi_align, roi_align_module.RoIAlignFunction.apply,
            nms_module.NMSop.apply) == originals
