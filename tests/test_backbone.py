"""PartialNet backbone: registries, options an mmdet/mmseg user expects, blocks, any input size."""
import copy
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm import PartialNet, partialnet_channels
from partialnet_mm.models.layers import (EuclideanRelativePositionBias, PartialConv,
                                         PATChannel)

ALL_ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
# A tiny arch for fast behavioural tests; exercises PAT_sp and PAT_sf like the presets.
TINY = dict(embed_dims=16, depths=(1, 1, 2, 1), use_spatial_attn=True,
            act_cfg=dict(type='GELU'))


def randomize_bn_stats(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_through_each_library_registry(scope):
    import importlib

    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='PartialNet', arch='t0'))
    assert isinstance(model, PartialNet)
    assert model.out_channels == [32, 64, 128, 256]


def test_arch_presets_and_channels():
    assert partialnet_channels('t2') == [64, 128, 256, 512]
    assert partialnet_channels('l', out_indices=(1, 3)) == [320, 1280]
    model = PartialNet(arch='s', out_indices=(2, 3))
    assert model.out_channels == [384, 768]
    assert model.arch['act_cfg']['type'] == 'ReLU'
    assert PartialNet(arch='t1').arch['use_spatial_attn'] is True
    custom = PartialNet(arch=dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1]))
    assert custom.out_channels == [16, 32, 48, 64]


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_any_input_size_runs_through_every_variant(arch):
    model = PartialNet(arch=arch).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 250, 333))
    # strides follow conv arithmetic: floor(250/4)=62, then halving with floor
    assert [tuple(o.shape[2:]) for o in outs] == [(62, 83), (31, 41), (15, 20), (7, 10)]
    assert [o.shape[1] for o in outs] == model.out_channels
    assert all(torch.isfinite(o).all() for o in outs)


def test_out_indices_and_forward_shapes():
    model = PartialNet(arch=TINY, out_indices=(1, 3)).eval()
    outs = model(torch.rand(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 12), (2, 128, 2, 3)]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')
    assert [tuple(o.shape) for o in PartialNet(arch=TINY, out_indices=(-1, ))(
        torch.rand(2, 3, 64, 64))] == [(2, 128, 2, 2)]


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages_freeze_exactly_what_they_say(frozen_stages):
    model = PartialNet(arch=TINY, frozen_stages=frozen_stages)
    model.train()
    frozen_prefixes = ([] if frozen_stages < 0 else ['stem.'] +
                       [f'stages.{i}.' for i in range(frozen_stages)] +
                       [f'norm{i}.' for i in range(frozen_stages)])
    for name, param in model.named_parameters():
        should_freeze = any(name.startswith(p) for p in frozen_prefixes)
        assert param.requires_grad == (not should_freeze), name
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            should_freeze = any((name + '.').startswith(p) for p in frozen_prefixes)
            assert module.training == (not should_freeze), name
    # frozen BN statistics do not move in a training step; the others do
    before = copy.deepcopy(model.state_dict())
    model(torch.rand(2, 3, 64, 64))
    after = model.state_dict()
    for key in before:
        if key.endswith('running_mean'):
            frozen = any(key.startswith(p) for p in frozen_prefixes)
            assert torch.equal(before[key], after[key]) == frozen, key


def test_norm_eval_keeps_bn_statistics_fixed():
    model = PartialNet(arch=TINY, norm_eval=True)
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert any(m.training for m in model.modules() if isinstance(m, nn.Dropout))
    before = copy.deepcopy(model.state_dict())
    model(torch.rand(2, 3, 64, 64))
    for key, value in model.state_dict().items():
        if 'running' in key:
            assert torch.equal(before[key], value), key


def test_with_cp_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = PartialNet(arch=TINY, drop_path_rate=0.2, attn_drop_rate=0.1)
    plain.init_weights()
    ckpt = PartialNet(arch=TINY, drop_path_rate=0.2, attn_drop_rate=0.1, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(123)  # same dropout / drop-path draws
        inp = x.clone().requires_grad_(True)
        outs = model(inp)
        sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
        results.append((outs, inp.grad, {n: p.grad for n, p in model.named_parameters()}))
    (outs_a, gin_a, grads_a), (outs_b, gin_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(gin_a, gin_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)


def test_pconv_inference_form_is_the_same_function():
    conv = PartialConv(32, 8)
    written = PartialConv(32, 8, deploy=True)  # one output tensor, no split / concatenate
    written.load_state_dict(conv.state_dict(), strict=True)
    x = torch.rand(2, 32, 9, 11)
    x_copy = x.clone()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), written(x), rtol=0, atol=0)
        assert torch.equal(x, x_copy), 'the mixer must not modify its input (residual uses it)'
        # untouched channels pass through bit for bit
        assert torch.equal(written(x)[:, 8:], x[:, 8:])


def test_pat_channel_attention_is_partial():
    """PAT_ch convolves the first C/4 channels; the rest never see the 3x3 conv."""
    block = PATChannel(16, 4).eval()
    randomize_bn_stats(block)
    x = torch.rand(1, 16, 6, 6)
    y = block(x)
    x2 = x.clone()
    x2[:, :4] += 1  # change only the convolved part
    assert torch.equal(block(x2)[:, 4:], y[:, 4:])


def test_irpe_buckets_cached_and_exact():
    rpe = EuclideanRelativePositionBias(num_heads=2)
    ids = rpe.bucket_ids(7, 32, torch.device('cpu'))
    assert ids.shape == (224, 224)
    assert rpe.bucket_ids(7, 32, torch.device('cpu')) is ids  # cached per size
    assert ids[0, 0] == 40  # distance 0 -> bucket beta
    assert ids[0, 5] == 45  # 5 columns apart
    # (0,0) to (6,31): d = round(sqrt(36 + 961)) = 32 > alpha: logarithmic branch
    import math
    expected = round(20 + math.log(32 / 20) / math.log(8) * 20)
    assert ids[0, 223] == 40 + expected
    assert ids.max() <= 80 and ids.min() >= 40
    with torch.no_grad():
        rpe.bias_table.copy_(torch.arange(162.).view(2, 81))
    bias = rpe((7, 32))
    assert bias.shape == (1, 2, 224, 224)
    assert bias[0, 1, 0, 5] == 81 + 45


def test_default_init_follows_the_authors():
    model = PartialNet(arch=TINY)
    model.init_weights()
    conv = model.stages[1].blocks[0].mlp.fc1
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert abs(conv.weight.mean().item()) < 0.005
    attn = model.stages[3].blocks[0].spatial_mixing.attn
    assert torch.equal(attn.proj.bias, torch.zeros_like(attn.proj.bias))
    assert torch.equal(attn.rpe.bias_table, torch.zeros_like(attn.rpe.bias_table))
    assert torch.equal(attn.norm.weight, torch.ones_like(attn.norm.weight))


def timm_trunc_normal_(tensor, std, a=-2., b=2.):
    """The truncated normal of the authors' ``timm.models.layers.trunc_normal_``: uniform
    draws mapped through the inverse normal CDF (torch's own ``nn.init.trunc_normal_`` now
    draws normals and redraws those out of range: the same law, other numbers)."""
    def cdf(x):
        return (1. + math.erf(x / math.sqrt(2.))) / 2.

    with torch.no_grad():
        tensor.uniform_(2 * cdf(a / std) - 1, 2 * cdf(b / std) - 1)
        tensor.erfinv_().mul_(std * math.sqrt(2.)).clamp_(min=a, max=b)


def authors_init(model, trunc_normal_):
    """The authors' ``cls_init_weights`` over ``model.modules()``: conv and linear weights
    truncated normal (std 0.02), zero biases, LayerNorm 1 and 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def test_default_init_is_declared_in_init_cfg():
    model = PartialNet(arch=TINY)
    assert model.init_cfg == [
        dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
        dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.)]
    model.init_cfg[0]['std'] = 1.  # a copy: the class's default stays
    assert PartialNet(arch=TINY).init_cfg[0]['std'] == .02


INIT_CASES = [dict(arch=TINY), dict(arch='t1'),
              dict(arch='t0', mixer_cfgs=[dict(type='DPConv', mixer='PATChannel')] * 3 + [None])]


@pytest.mark.parametrize('kwargs', INIT_CASES, ids=['tiny', 't1', 'dpconv'])
def test_declared_default_init_draws_exactly_the_authors_init(kwargs):
    """Every conv (DPConv's too) and linear layer reached, in module order, with the
    authors' draws: the same tensors and the same number of draws (the neck and heads
    initialised after the backbone get the same values for a seed)."""
    torch.manual_seed(0)
    model = PartialNet(**kwargs)
    reference = copy.deepcopy(model)
    torch.manual_seed(1)
    model.init_weights()
    after_ours = torch.rand(3)
    torch.manual_seed(1)
    authors_init(reference, timm_trunc_normal_)
    assert torch.equal(torch.rand(3), after_ours)
    theirs = reference.state_dict()
    for key, ours in model.state_dict().items():
        assert torch.equal(ours, theirs[key]), key


@pytest.mark.parametrize('kwargs', INIT_CASES, ids=['tiny', 't1', 'dpconv'])
def test_declared_default_init_has_the_distributions_of_the_init_it_replaces(kwargs):
    """Per layer type, for a fixed seed, the statistics of the init in code it replaces
    (``nn.init.trunc_normal_``, which draws other numbers from the same law)."""
    def statistics(model):
        weights = {kind: torch.cat([m.weight.detach().flatten() for m in model.modules()
                                    if isinstance(m, kind)])
                   for kind in (nn.Conv2d, nn.Linear)}
        biases = torch.cat([m.bias.detach() for m in model.modules()
                            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None])
        norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
        return weights, biases, norms

    torch.manual_seed(0)
    model = PartialNet(**kwargs)
    old = copy.deepcopy(model)
    model.init_weights()
    authors_init(old, nn.init.trunc_normal_)
    (ours, our_biases, our_norms), (theirs, _, _) = statistics(model), statistics(old)
    for kind in ours:
        assert ours[kind].std().item() == pytest.approx(theirs[kind].std().item(), rel=0.05)
        assert ours[kind].std().item() == pytest.approx(0.02, rel=0.05)
        assert abs(ours[kind].mean().item() - theirs[kind].mean().item()) < 2e-3
        assert ours[kind].abs().max() <= 2.
    assert torch.count_nonzero(our_biases) == 0
    assert our_norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0)
                             for m in our_norms)


def test_a_users_init_cfg_is_applied_as_written():
    model = PartialNet(arch=TINY, init_cfg=dict(type='Constant', layer='Conv2d', val=0.5))
    qkv = model.stages[3].blocks[0].spatial_mixing.attn.qkv.weight.detach().clone()
    model.init_weights()
    assert model.init_cfg == dict(type='Constant', layer='Conv2d', val=0.5)
    assert all(torch.all(m.weight == 0.5) for m in model.modules() if isinstance(m, nn.Conv2d))
    # nothing else ran: the linear layers keep what they were built with
    assert torch.equal(model.stages[3].blocks[0].spatial_mixing.attn.qkv.weight, qkv)
    bare = PartialNet(arch=TINY, init_cfg=[])  # no initialisation at all
    state = copy.deepcopy(bare.state_dict())
    bare.init_weights()
    assert all(torch.equal(v, state[k]) for k, v in bare.state_dict().items())


@pytest.mark.parametrize('kwargs, where', [
    (dict(arch=dict(TINY, act_cfg=dict(type='RELU'))), "PartialNet arch's act_cfg"),
    (dict(arch='t0', act_cfg=dict(type='Swish2')), 'PartialNet act_cfg'),
    (dict(arch='t0', act_cfg='GELU'), 'PartialNet act_cfg'),
    (dict(arch='t0', act_cfg=dict(type='Conv2d')), 'PartialNet act_cfg'),
])
def test_unknown_activations_are_refused_with_the_choices(kwargs, where):
    with pytest.raises(ValueError) as err:
        PartialNet(**kwargs)
    message = str(err.value)
    assert message.startswith(where)
    assert "dict(type='GELU') and dict(type='ReLU', inplace=True)" in message
    assert "act_layer 'GELU' and 'RELU'" in message


def test_the_presets_use_the_authors_activations_and_others_build():
    assert {name: PartialNet.parse_arch(name)['act_cfg'] for name in ALL_ARCHS} == dict(
        t0=dict(type='GELU'), t1=dict(type='GELU'), t2=dict(type='ReLU', inplace=True),
        s=dict(type='ReLU', inplace=True), m=dict(type='ReLU', inplace=True),
        l=dict(type='ReLU', inplace=True))
    model = PartialNet(arch=dict(TINY, act_cfg=dict(type='SiLU')))
    assert isinstance(model.stages[0].blocks[0].mlp.act, nn.SiLU)
    assert isinstance(PartialNet(arch='t0', act_cfg=dict(type='ReLU')).stages[0].blocks[0]
                      .mlp.act, nn.ReLU)


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch=dict(depths=(1, 1, 1, 1))),
     r"missing \['embed_dims'\].*Or name a preset: \['l', 'm', 's', 't0', 't1', 't2'\]"),
    (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), act='GELU')),
     r"unknown keys \['act'\].*'act_cfg'.*Or name a preset: \['l', 'm', 's', 't0', 't1', 't2'\]"),
])
def test_arch_dict_errors_name_the_presets(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PartialNet(**kwargs)


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='t9'), r"Unknown PartialNet arch 't9'.*\['l', 'm', 's', 't0', 't1', 't2'\]"),
    (dict(arch=dict(depths=(1, 1, 1, 1))), r"missing \['embed_dims'\]"),
    (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), heads=2)), r"unknown keys \['heads'\]"),
    (dict(arch=dict(embed_dims=18, depths=(1, 1, 1, 1))), r'18 channels cannot be split into '
     r'n_div=4'),
    (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), num_heads=5)), r'5 heads cannot share'),
    (dict(arch='t0', out_indices=(0, 4)), r'out_indices \(0, 4\) out of range'),
    (dict(arch='t0', frozen_stages=5), r'frozen_stages must be in \[-1, 4\]'),
    (dict(arch='t0', drop_path_rate=-0.1), r'drop_path_rate must be in \[0, 1\).*got -0\.1'),
    (dict(arch='t0', drop_path_rate=1.0), r'drop_path_rate must be in \[0, 1\).*got 1\.0'),
    (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), drop_path_rate=1.5)),
     r"the arch's drop_path_rate must be in \[0, 1\).*got 1\.5"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PartialNet(**kwargs)


@pytest.mark.parametrize('shape, match', [
    ((1, 1, 64, 64), r'built for 3 input channels but got 1'),
    ((3, 64, 64), r'expects a 4-D \(N, C, H, W\) tensor, got \(3, 64, 64\)'),
    ((1, 3, 24, 64), r'smaller than its total stride 32'),
])
def test_bad_inputs_are_named(shape, match):
    model = PartialNet(arch=TINY)
    with pytest.raises(ValueError, match=match):
        model(torch.rand(*shape))


def test_a_mixer_must_follow_the_mixer_contract():
    """What the block, the deploy walker and checkpoint loading rely on is SpatialMixer's."""
    from partialnet_mm.models import MIXERS, SpatialMixer

    class NotAMixer(nn.Module):
        residual = False

        def __init__(self, channels, conv_channels):
            super().__init__()

    MIXERS.register_module(name='_NotAMixer', module=NotAMixer, force=True)
    try:
        with pytest.raises(TypeError, match=r"'_NotAMixer'.*is not a partialnet_mm.models."
                                            r"SpatialMixer; subclass it"):
            PartialNet(arch=TINY, mixer_cfgs=dict(type='_NotAMixer'))
    finally:
        MIXERS.module_dict.pop('_NotAMixer')
    model = PartialNet(arch=TINY)
    mixers = [b.spatial_mixing for s in model.stages for b in s.blocks]
    assert all(isinstance(m, SpatialMixer) for m in mixers)
    assert [m.residual for m in mixers][-1] is True and mixers[0].residual is False
