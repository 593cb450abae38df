"""The training path computes what the authors' (naive) form computes: outputs, gradients of
every parameter and the BatchNorms' running statistics, for all six variants.

The comparison runs in float64, where both forms agree to round-off: in float32 the
BatchNorm chains amplify the different rounding of the two formulations (two-pass vs
one-pass statistics, channels-last vs NCHW kernels, the analytic post-gating norm) to a few
1e-3 of a gradient's scale, which says nothing about the formulas.
"""
import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm import PartialNet
from partialnet_mm.models import set_naive_forward

ALL_ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')


def random_bn_state(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2., generator=g)
                m.weight.normal_(1., 0.3, generator=g)
                m.bias.normal_(0., 0.3, generator=g)
    return model


def one_step(model, x, weights):
    model.train()
    model.zero_grad(set_to_none=True)
    outs = model(x)
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    return (outs, {n: p.grad for n, p in model.named_parameters()},
            {n: b.clone() for n, b in model.named_buffers()})


def assert_same_outputs_and_gradients(arch, outs_o, outs_n, grads_o, grads_n):
    """Equal to float64 round-off: outputs absolutely, gradients relative to their scale."""
    for a, b in zip(outs_o, outs_n):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    scale = max(g.abs().max() for g in grads_n.values())
    for name, grad in grads_n.items():
        torch.testing.assert_close(grads_o[name], grad, rtol=1e-7, atol=1e-9 * scale,
                                   msg=f'{arch}: gradient of {name}')


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_training_path_equals_the_naive_form(arch):
    torch.manual_seed(0)
    ours = random_bn_state(PartialNet(arch=arch, drop_path_rate=0., attn_drop_rate=0.,
                                      proj_drop_rate=0.)).double()
    naive = set_naive_forward(copy.deepcopy(ours))
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        weights = [torch.randn_like(o) for o in copy.deepcopy(naive).train()(x)]
    (outs_n, grads_n, bufs_n), (outs_o, grads_o, bufs_o) = (
        one_step(naive, x, weights), one_step(ours, x, weights))
    assert all(o.is_contiguous() for o in outs_o)  # NCHW out, channels-last inside
    assert_same_outputs_and_gradients(arch, outs_o, outs_n, grads_o, grads_n)
    for name, buf in bufs_n.items():
        torch.testing.assert_close(bufs_o[name], buf, rtol=1e-9, atol=1e-12,
                                   msg=f'{arch}: {name}')


def test_float32_training_path_stays_close():
    """What a float32 run from the authors' initialisation sees: the same outputs to 1e-4
    and gradients to 1e-2 of their scale (the two formulations' rounding, amplified through
    the training-mode BatchNorms)."""
    torch.manual_seed(0)
    ours = PartialNet(arch='t1', attn_drop_rate=0., proj_drop_rate=0., drop_path_rate=0.)
    ours.init_weights()
    random_bn_state(ours)
    naive = set_naive_forward(copy.deepcopy(ours))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        weights = [torch.randn_like(o) for o in copy.deepcopy(naive).train()(x)]
    (outs_n, grads_n, _), (outs_o, grads_o, _) = (one_step(naive, x, weights),
                                                  one_step(ours, x, weights))
    for a, b in zip(outs_o, outs_n):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()
    scale = max(g.abs().max() for g in grads_n.values())
    assert max((grads_o[n] - g).abs().max() for n, g in grads_n.items()) <= 1e-2 * scale


@pytest.mark.parametrize('arch', ('t0', 't2'))
def test_stochastic_depth_drops_the_same_samples(arch):
    """With the same seed, the training path's fused residual + drop path drops the samples
    mmcv's DropPath drops, and gives the same outputs and gradients."""
    torch.manual_seed(0)
    ours = random_bn_state(PartialNet(arch=arch, drop_path_rate=0.5, attn_drop_rate=0.,
                                      proj_drop_rate=0.)).double()
    naive = set_naive_forward(copy.deepcopy(ours))
    x = torch.randn(4, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        weights = [torch.randn_like(o) for o in copy.deepcopy(naive).eval()(x)]
    torch.manual_seed(1)
    outs_n, grads_n, _ = one_step(naive, x, weights)
    torch.manual_seed(1)
    outs_o, grads_o, _ = one_step(ours, x, weights)
    torch.manual_seed(2)  # another draw drops other samples: the comparison can fail
    outs_other, _, _ = one_step(copy.deepcopy(naive), x, weights)
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(outs_other, outs_n))
    assert_same_outputs_and_gradients(arch, outs_o, outs_n, grads_o, grads_n)
