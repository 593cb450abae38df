"""DPConv: learned splits — gradients, train == eval, losses in every library's loss dict,
warm-up and logging through the Runner, export to a plain PartialNet."""
import copy
import glob
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from conftest import ROOT, data_root_options
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm import PartialNet
from partialnet_mm.apis import train
from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.dpconv import (LOSS_COMPLEXITY, LOSS_ORDER, DPConvHook, DPConvMixer,
                                  attach_dpconv_losses, dpconv_layers, dpconv_losses,
                                  export_checkpoint, export_dpconv, set_dpconv_epoch)
from partialnet_mm.dpconv.hook import train_epoch
from partialnet_mm.dpconv.layer import conv_width, kronecker_mask, leading_mask
from partialnet_mm.models.layers import PartialConv, PATChannel, PATSelfAttention

# unit tests train tiny backbones directly, without the hook that would attach the losses
pytestmark = pytest.mark.filterwarnings('ignore:DPConv is on, but nothing')

# A tiny arch (as in test_backbone) with PAT_sp; DPConv on every stage, so PAT_ch and PAT_sf
# layers are both exercised. Widths 16..128: 3, 4, 5 and 4 gates.
TINY = dict(embed_dims=16, depths=(1, 1, 2, 1), use_spatial_attn=True,
            act_cfg=dict(type='GELU'))
DPCONV_EVERYWHERE = [dict(type='DPConv', mixer='PATChannel')] * 3 + [
    dict(type='DPConv', mixer='PATSelfAttention')]
RTOL = 1e-5  # max |a - b| <= RTOL * max |reference|
DET_DEMO = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_dpconv_demo.py')
CLS_DEMO = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_dpconv_demo.py')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def tiny_dpconv(**kwargs):
    return PartialNet(arch=TINY, mixer_cfgs=DPCONV_EVERYWHERE, attn_drop_rate=0.,
                      proj_drop_rate=0., **kwargs)


def randomize(model, seed=0):
    """Non-trivial values for every parameter (gates excepted) and BN statistic."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith('gates'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1
                        + (1. if name.endswith('norm.weight') else 0.))
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def set_gates(layer, signs, magnitude=0.3):
    """Gates of ``layer`` with the given signs (+1 on, -1 off), inside the STE window."""
    with torch.no_grad():
        layer.conv.gates.copy_(torch.tensor(signs, dtype=torch.float32) * magnitude)


def bn_eval(model):
    model.train()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
    return model


def assert_close(out, ref, what):
    err, scale = (out - ref).abs().max().item(), ref.abs().max().item()
    assert err <= RTOL * scale, f'{what}: max|diff| {err:.3g} > {RTOL} x {scale:.3g}'


# Per layer (s0.b0, s1.b0, s2.b0, s2.b1, s3.b0) gate signs: legal orders, illegal orders
# (an on gate before an off gate: the convolved block is still the leading c channels, with a
# sparser mask), the narrowest and the widest splits.
GATE_PATTERNS = {
    'start (n_div=4)': None,
    'mixed, illegal orders': [[1, -1, 1], [-1, 1, -1, 1], [1, 1, -1, -1, 1],
                              [-1, -1, -1, -1, 1], [1, -1, 1, -1]],
    'narrowest and widest': [[-1, -1, -1], [1, 1, 1, 1], [-1] * 5, [1] * 5, [1, 1, 1, 1]],
}


def apply_pattern(model, pattern):
    if pattern is not None:
        for (_, layer), signs in zip(dpconv_layers(model), pattern):
            set_gates(layer, signs)


# ---------------------------------------------------------------------------- the layer
def test_masks_of_every_gate_state():
    base, channels = 2, 32  # 3 gates (and the fixed leading I_2 factor)
    for code in range(8):
        states = torch.tensor([(code >> k) & 1 for k in (2, 1, 0)], dtype=torch.float32)
        c = conv_width(states, base)
        assert c == base * 2**int(states.sum())
        # the convolved channels are the leading c, whatever the gate order
        assert leading_mask(states, base).tolist() == [1.] * c + [0.] * (channels - c)
        mask = kronecker_mask(states, base)
        assert mask.sum() == channels * c  # D^2 / G with G = D / c groups
        legal = states.tolist() == sorted(states.tolist())
        assert bool((mask[:c, :c] == 1).all()) == legal, states  # dense block iff legal
        assert (mask[:c, c:] == 0).all() == legal
    # an off gate's derivative of the channel mask is the next block: what switching it on
    # adds to the convolved part (legal order [0, 0, 1]: c = 4, blocks [4, 8) and [8, 12))
    states = torch.tensor([0., 0., 1.])
    jac = torch.autograd.functional.jacobian(lambda s: leading_mask(s, base), states)
    assert jac[:, 1].nonzero().flatten().tolist() == [4, 5, 6, 7]
    assert jac[:, 0].nonzero().flatten().tolist() == [8, 9, 10, 11]


def test_gates_learn_from_the_task_loss():
    model = randomize(tiny_dpconv())
    apply_pattern(model, GATE_PATTERNS['mixed, illegal orders'])
    layers = dict(dpconv_layers(model))
    with torch.no_grad():  # one gate beyond the straight-through window: no gradient there
        layers['s2.b0'].conv.gates[0] = 1.5
    bn_eval(model)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(2))
               for o in model(x)]
    loss = sum((o * w).sum() for o, w in zip(model(x), weights))
    loss.backward()
    for name, layer in layers.items():
        grad, gates = layer.conv.gates.grad, layer.conv.gates.detach()
        inside = gates.abs() < 1
        assert grad is not None and (grad[inside] != 0).all(), (name, grad)
        assert (grad[~inside] == 0).all(), (name, grad)
        # gates that are off get a gradient too: what convolving more channels would change
        assert (grad[(gates < 0) & inside] != 0).all(), (name, grad)


@pytest.mark.parametrize('pattern', sorted(GATE_PATTERNS))
def test_train_and_eval_compute_the_same_function(pattern):
    model = randomize(tiny_dpconv())
    apply_pattern(model, GATE_PATTERNS[pattern])
    widths = [layer.conv_channels for _, layer in dpconv_layers(model)]
    for size in ((64, 96), (72, 104)):  # 104 is not a multiple of the total stride 32
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
        train_outs = bn_eval(model)(x)  # straight-through path (gates learning)
        assert train_outs[-1].requires_grad
        model.eval()
        with torch.no_grad():
            eval_outs = model(x)
        for i, (a, b) in enumerate(zip(train_outs, eval_outs)):
            assert a.shape == b.shape
            assert_close(a.detach(), b, f'{pattern} {size} out[{i}]')
    assert [layer.conv_channels for _, layer in dpconv_layers(model)] == widths


def test_frozen_gates_get_no_gradient_and_zero_losses():
    model = randomize(tiny_dpconv())
    assert set_dpconv_epoch(model, 0, warmup_epochs=2)  # the warm-up freezes from the start
    assert all(layer.conv.frozen for _, layer in dpconv_layers(model))
    bn_eval(model)
    out = model(torch.randn(2, 3, 64, 64))
    losses = dpconv_losses(model)
    (sum(o.sum() for o in out) + sum(losses.values())).backward()
    assert all(v.item() == 0 for v in losses.values())
    for _, layer in dpconv_layers(model):
        assert layer.conv.gates.grad is not None  # in the graph (DDP) ...
        assert (layer.conv.gates.grad == 0).all()  # ... but frozen
    assert set_dpconv_epoch(model, 1, 2) and not set_dpconv_epoch(model, 2, 2)


# ---------------------------------------------------------------------------- the losses
def test_budget_term_is_zero_under_budget_and_positive_above():
    model = tiny_dpconv()
    settings = dict(budget=2, complexity_weight=0.5)
    layers = [layer for _, layer in dpconv_layers(model)]
    sizes = [layer.channels**2 for layer in layers]
    budget = sum(sizes) / 2**2

    def usage():
        return sum(layer.channels * layer.conv_channels for layer in layers) / budget

    assert usage() == pytest.approx(1.)  # the start, n_div = 4, is exactly the budget b = 2
    assert dpconv_losses(model, **settings)[LOSS_COMPLEXITY].item() == 0
    set_gates(layers[-1], [-1, -1, 1, 1])  # the widest layer to 1/8: under budget
    assert usage() < 1 and dpconv_losses(model, **settings)[LOSS_COMPLEXITY].item() == 0
    set_gates(layers[-1], [1, 1, 1, 1])  # ... to 1/2: above
    loss = dpconv_losses(model, **settings)[LOSS_COMPLEXITY]
    assert usage() > 1
    assert loss.item() == pytest.approx(0.5 * (usage() - 1))
    loss.backward()
    grad = layers[-1].conv.gates.grad
    assert (grad > 0).all()  # descending pushes the 'on' gates towards off
    # with a looser budget the same splits are within it
    loose = tiny_dpconv()
    set_gates(dpconv_layers(loose)[-1][1], [1, 1, 1, 1])
    assert dpconv_losses(loose, budget=1.2)[LOSS_COMPLEXITY].item() == 0


def test_order_term_is_zero_in_legal_order_and_pushes_towards_it():
    model = tiny_dpconv()
    layer = dict(dpconv_layers(model))['s2.b0']
    assert dpconv_losses(model, order_weight=2.)[LOSS_ORDER].item() == 0  # legal at the start
    with torch.no_grad():
        layer.conv.gates.copy_(torch.tensor([-0.2, 0.4, -0.1, 0.3, 0.5]))  # on before off
    loss = dpconv_losses(model, order_weight=2.)[LOSS_ORDER]
    assert loss.item() == pytest.approx(2. * (0.4 - (-0.1)))
    loss.backward()
    assert layer.conv.gates.grad.tolist() == pytest.approx([0, 2., -2., 0, 0])


# ---------------------------------------------------------------------------- export
def test_export_gives_a_plain_partialnet_with_the_same_outputs():
    model = randomize(tiny_dpconv(), seed=4)
    apply_pattern(model, GATE_PATTERNS['mixed, illegal orders'])
    model.eval()
    state, changes = export_dpconv(model)
    assert changes['arch']['conv_channels'] == ((4, ), (4, ), (8, 2), (16, ))
    assert changes['mixer_cfgs'] == [dict(type='PATChannel')] * 3 + [
        dict(type='PATSelfAttention')]
    plain = PartialNet(**changes, attn_drop_rate=0., proj_drop_rate=0.).eval()
    plain.load_state_dict(state, strict=True)
    assert not any(k.endswith('gates') for k in state)
    mixers = [b.spatial_mixing for s in plain.stages for b in s.blocks]
    assert [type(m) for m in mixers] == [PATChannel] * 4 + [PATSelfAttention]
    assert [m.conv.weight.shape[0] for m in mixers] == [4, 4, 8, 2, 16]
    x = torch.randn(2, 3, 72, 104, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for i, (out, ref) in enumerate(zip(plain(x), model(x))):
            assert_close(out, ref, f'exported out[{i}]')
    # and back: the plain weights load into a DPConv backbone (each DPConv mixer embeds its
    # plain tensors) and compute the same again
    again = tiny_dpconv().eval()
    again.load_state_dict(state, strict=True)
    assert [layer.conv_channels for _, layer in dpconv_layers(again)] == [4, 4, 8, 2, 16]
    with torch.no_grad():
        for i, (out, ref) in enumerate(zip(again(x), model(x))):
            assert_close(out, ref, f're-embedded out[{i}]')


def test_dpconv_starts_from_plain_pretrained_weights(tmp_path):
    plain = randomize(PartialNet(arch=TINY, attn_drop_rate=0., proj_drop_rate=0.)).eval()
    torch.save(dict(state_dict=plain.state_dict()), tmp_path / 'plain.pth')
    model = tiny_dpconv(init_cfg=dict(type='PartialNetPretrained',
                                      checkpoint=str(tmp_path / 'plain.pth')))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for out, ref in zip(model(x), plain(x)):
            assert_close(out, ref, 'DPConv from plain weights')
    # the other way round is refused with the fix named
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'dpconv.pth')
    fresh = PartialNet(arch=TINY, init_cfg=dict(type='PartialNetPretrained',
                                                checkpoint=str(tmp_path / 'dpconv.pth')))
    with pytest.raises(CheckpointError, match='export it with tools/export_dpconv.py'):
        fresh.init_weights()


# ---------------------------------------------------------------------------- configs / errors
def test_plain_mixers_keep_the_backbone_and_conv_channels_validate():
    default = PartialNet(arch='t1')
    explicit = PartialNet(arch=dict(PartialNet.parse_arch('t1'), conv_channels=[12, 24, None, 96]),
                          mixer_cfgs=[dict(type='PATChannel')] * 3 + [None])
    assert {k: v.shape for k, v in default.state_dict().items()} == \
        {k: v.shape for k, v in explicit.state_dict().items()}
    assert dpconv_layers(default) == []
    per_block = PartialNet(arch=dict(TINY, conv_channels=[None, 8, [4, 16], 64]))
    assert [b.spatial_mixing.conv_channels for s in per_block.stages for b in s.blocks] == \
        [4, 8, 4, 16, 64]
    bad = [([4, 8, 16], 'one entry per stage'), ([4, 8, [4], 32], r'conv_channels\[2\]'),
           ([16, 8, 16, 32], r'conv_channels\[0\]\[0\] = 16.*\[1, 15\]'),
           ([4, 8, 16, 30], 'heads cannot share')]
    for spec, message in bad:
        with pytest.raises(ValueError, match=message):
            PartialNet(arch=dict(TINY, conv_channels=spec))


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(mixer_cfgs=[dict(type='DPConv', mixer='PATCh')] + [None] * 3), ValueError,
     r"stage 0 block 0: DPConv: mixer must be one of \('PConv'"),
    (dict(mixer_cfgs=[dict(type='DPConv', gate_init=1.0)] + [None] * 3), ValueError,
     'straight-through window'),
    (dict(mixer_cfgs=[dict(type='DPConv')] * 3), ValueError, 'one per stage'),
    (dict(mixer_cfgs=[dict(type='NoSuchMixer')] + [None] * 3), KeyError,
     r"unknown mixer type 'NoSuchMixer'; registered mixers: \["),
])
def test_mixer_config_errors_name_the_fix(kwargs, error, message):
    with pytest.raises(error, match=message):
        PartialNet(arch=TINY, **kwargs)


@pytest.mark.parametrize('hook_cfg, message', [
    (dict(budget=0.5), 'must be >= 1'),
    (dict(warmup_epochs=1.5), 'non-negative integer'),
    (dict(order_weight=-1), 'order_weight must be >= 0'),
])
def test_hook_config_errors_name_the_fix(hook_cfg, message):
    with pytest.raises(ValueError, match=message):
        DPConvHook(**hook_cfg)


def test_a_split_dpconv_cannot_reach_is_refused():
    with pytest.raises(ValueError, match=r'stage 0 block 0: .*cannot start with 6 convolved'):
        PartialNet(arch=dict(TINY, conv_channels=[6, None, None, None]),
                   mixer_cfgs=DPCONV_EVERYWHERE)


# ---------------------------------------------------------------------------- loss dicts
def build_from_config(scope, cfg_model):
    import importlib

    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        return importlib.import_module(f'{scope}.registry').MODELS.build(cfg_model)


def det_batch(model):
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(2, [[3, 128, 160]] * 2, num_items=[2, 1], num_classes=4,
                            with_mask=True)
    return model.data_preprocessor(packed, True)


def seg_batch(model):
    from test_segmentation import seg_inputs
    return model.data_preprocessor(seg_inputs(2, 64, 64, 150), True)


def cls_batch(model):
    from mmpretrain.structures import DataSample
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def det_model():
    cfg = Config.fromfile(DET_DEMO)
    cfg.model.backbone.init_cfg = None
    return build_from_config('mmdet', cfg.model), 'loss_cls', det_batch


def seg_model():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'fpn_partialnet_t0_ade20k.py'))
    cfg.model.backbone.update(init_cfg=None, mixer_cfgs=[dict(type='DPConv')] * 3 + [None])
    cfg.model.data_preprocessor.size = (64, 64)  # not padded to the 512 px crop
    return build_from_config('mmseg', cfg.model), 'decode.loss_ce', seg_batch


def cls_model():
    cfg = Config.fromfile(CLS_DEMO)
    model = build_from_config('mmpretrain',
                              dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    return model, 'loss', cls_batch


@pytest.mark.parametrize('build', [det_model, seg_model, cls_model],
                         ids=['mask_rcnn', 'semantic_fpn', 'classifier'])
def test_losses_enter_the_loss_dict_of_every_library(build):
    model, task_loss, batch = build()
    data = batch(model)
    model.train()
    assert LOSS_COMPLEXITY not in model(**data, mode='loss')  # nothing attached yet
    layers = attach_dpconv_losses(model)
    assert [layer for _, layer in layers] == [m for m in model.backbone.modules()
                                              if isinstance(m, DPConvMixer)]
    attach_dpconv_losses(model)  # idempotent: one provider
    assert list(model.aux_loss_providers) == ['dpconv']
    set_dpconv_epoch(model, 5, warmup_epochs=1)  # past the warm-up, as DPConvHook sets it
    (_, first), (_, second) = dpconv_layers(model.backbone)[:2]
    set_gates(first, [1] * first.conv.gates.numel())  # above budget
    set_gates(second, [1] * (second.conv.gates.numel() - 1) + [-1])  # out of order
    # the same dict through the Runner's path (forward, mode='loss') and model.loss() itself
    for losses in (model(**data, mode='loss'), model.loss(data['inputs'],
                                                          data['data_samples'])):
        assert task_loss in losses
        assert losses[LOSS_COMPLEXITY].item() > 0 and losses[LOSS_ORDER].item() > 0
    parsed, log_vars = model.parse_losses(losses)  # what train_step optimises and logs
    assert LOSS_COMPLEXITY in log_vars and LOSS_ORDER in log_vars
    parsed.backward()
    for name, layer in dpconv_layers(model.backbone):
        assert layer.conv.gates.grad.abs().sum() > 0, name
    # a copy of the model computes its own losses
    copied = copy.deepcopy(model)
    set_gates(dpconv_layers(copied.backbone)[0][1], [-1] * first.conv.gates.numel())
    assert copied.aux_loss_providers['dpconv']()[LOSS_COMPLEXITY].item() != \
        model.aux_loss_providers['dpconv']()[LOSS_COMPLEXITY].item()


def test_hook_needs_a_dpconv_backbone_and_counts_epochs_of_iteration_loops():
    from types import SimpleNamespace
    runner = SimpleNamespace(model=nn.Sequential(PartialNet(arch=TINY)))
    with pytest.raises(ValueError, match='has no DPConv mixer'):
        DPConvHook().before_run(runner)
    iter_based = SimpleNamespace(train_loop=SimpleNamespace(dataloader=[None] * 5), iter=12)
    assert train_epoch(iter_based) == 2


def test_training_without_the_hook_warns():
    model = tiny_dpconv().train()
    with pytest.warns(UserWarning, match=r"custom_hooks=\[dict\(type='DPConvHook'\)\]"):
        model(torch.randn(2, 3, 64, 64))


# ---------------------------------------------------------------------------- runner, export CLI
@pytest.mark.slow
def test_runner_trains_logs_and_exports(tmp_path):
    """The classification demo with DPConv: warm-up epoch, then learning; losses and widths
    logged; the exported checkpoint gives the same logits as a plain classifier."""
    from partialnet_mm.tooling.demo_data import make_imagenet_demo
    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=4, num_val_per_class=1)
    work = tmp_path / 'work'
    options = data_root_options(data_root) + [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2', 'train_dataloader.batch_size=8',
        'default_hooks.logger.interval=1', 'randomness.seed=0']
    train(CLS_DEMO, str(work), cfg_options=options)
    log = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))[0]
    records = [json.loads(line) for line in open(log) if 'loss' in line]
    assert len(records) == 4  # 2 epochs x 2 iterations
    for r in records:
        assert {LOSS_COMPLEXITY, LOSS_ORDER, 'dpconv/budget_usage'} <= set(r)
        assert all(f'dpconv/s{i}.b{j}' in r for i, depth in enumerate((1, 2, 8))
                   for j in range(depth))
    for r in records[:2]:  # the warm-up epoch keeps the start (n_div = 4), losses zero
        assert [r[f'dpconv/s{i}.b0'] for i in range(3)] == [8, 16, 32]
        assert r[LOSS_COMPLEXITY] == 0 and r[LOSS_ORDER] == 0
    text = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    assert 'DPConv: gates frozen (warm-up) until epoch 1' in text
    assert 'DPConv: learning the splits from epoch 2' in text and 'DPConv splits: s0.b0' in text

    exported, exported_cfg = tmp_path / 'plain.pth', tmp_path / 'plain.py'
    info = export_checkpoint(str(work / 'epoch_2.pth'), str(exported), CLS_DEMO,
                             str(exported_cfg))
    meta = torch.load(exported, weights_only=True)['meta']['dpconv_export']
    assert meta['conv_channels'] == info['conv_channels']
    plain_mixers = [dict(type='PATChannel')] * 3 + [dict(type='PATSelfAttention')]
    assert meta['config_change']['model']['backbone']['mixer_cfgs'] == plain_mixers
    from mmengine.runner import load_checkpoint
    dp_cfg, plain_cfg = Config.fromfile(CLS_DEMO), Config.fromfile(str(exported_cfg))
    assert plain_cfg.model.backbone.mixer_cfgs == plain_mixers
    assert plain_cfg.model.backbone.arch['conv_channels'] == info['conv_channels']
    assert [h['type'] for h in plain_cfg.custom_hooks] == [
        'SwitchRecipeHook', 'RandomStateHook', 'NonFiniteLossHook']
    dp_model = build_from_config('mmpretrain', dp_cfg.model).eval()
    plain_model = build_from_config('mmpretrain', plain_cfg.model).eval()
    load_checkpoint(dp_model, str(work / 'epoch_2.pth'), strict=True, logger='silent')
    load_checkpoint(plain_model, str(exported), strict=True, logger='silent')
    assert not any(isinstance(m, DPConvMixer) for m in plain_model.modules())
    assert all(isinstance(b.spatial_mixing, PartialConv)
               for s in plain_model.backbone.stages for b in s.blocks)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        assert_close(plain_model(x, mode='tensor'), dp_model(x, mode='tensor'), 'logits')


def test_export_refuses_a_plain_checkpoint(tmp_path):
    torch.save(dict(state_dict=PartialNet(arch=TINY).state_dict()), tmp_path / 'plain.pth')
    with pytest.raises(CheckpointError, match='no DPConv gates'):
        export_checkpoint(str(tmp_path / 'plain.pth'), str(tmp_path / 'out.pth'), CLS_DEMO)
    assert not (tmp_path / 'out.pth').exists()


def test_folding_keeps_dpconv_mixers_as_they_are():
    """switch_to_deploy() folds the rest of the backbone; a DPConv mixer (and the attention
    it uses through its own computation) stays, computing the same function."""
    model = randomize(tiny_dpconv(), seed=6).eval()
    folded = copy.deepcopy(model).switch_to_deploy()
    dp_attn = [m.attn for _, m in dpconv_layers(folded)]
    assert all(not a.deploy for a in dp_attn) and folded.stem.deploy
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for out, ref in zip(folded(x), model(x)):
            assert_close(out, ref, 'folded with DPConv mixers')
