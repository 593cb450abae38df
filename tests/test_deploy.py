"""Deployment: the folded inference form computes what the trained model computes, folded
checkpoints load into ``deploy=True`` models; ONNX export, benchmark, FLOPs and
``test(fuse=True)``."""
import copy
import os
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
from conftest import ROOT, assert_outputs_close, data_root_options, randomize_inference_state
from mmengine.analysis import FlopAnalyzer
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm import PartialNet, switch_to_deploy
from partialnet_mm.analysis import build_arch_model, switch_model_to_deploy
from partialnet_mm.analysis.flops import format_table as flops_table
from partialnet_mm.analysis.flops import count_flops, measure
from partialnet_mm.analysis.report import MALLOC_ENV, machine_description
from partialnet_mm.apis import test as run_test
from partialnet_mm.deploy import export_onnx, fold_checkpoint
from partialnet_mm.models import SpatialMixer, set_naive_forward
from partialnet_mm.models.layers import (EuclideanRelativePositionBias, PartialNetBlock,
                                         build_mixer)
from partialnet_mm.runner import load_config
from partialnet_mm.tooling.benchmark import benchmark_inference, format_table, model_sources

FUSED_RTOL = 1e-5  # max |fused - unfused| <= FUSED_RTOL * max |unfused|, per output
ONNX_RTOL = 1e-4
# (arch, input): t0/t1 at the full classification size, the others small
PARITY_CASES = [('t0', (2, 3, 224, 224)), ('t1', (2, 3, 224, 224)), ('t2', (2, 3, 64, 64)),
                ('s', (1, 3, 64, 64)), ('m', (1, 3, 64, 64)), ('l', (1, 3, 64, 64))]
SPEC_T0_CLASSIFIER_PARAMS = 3486160  # SPEC.md, variants table


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def fused_copy(model: PartialNet, memory_format: str = 'auto') -> PartialNet:
    return copy.deepcopy(model).switch_to_deploy(memory_format)


@pytest.mark.parametrize('arch, shape', PARITY_CASES)
def test_fused_backbone_equals_unfused(arch, shape):
    model = randomize_inference_state(PartialNet(arch=arch)).eval()
    fused = fused_copy(model)
    # every BN next to a convolution is gone; only the four output norms remain
    assert sum(isinstance(m, _BatchNorm) for m in fused.modules()) == 4
    assert sum(isinstance(m, _BatchNorm) for m in model.modules()) > 4
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), fused(x)
    assert_outputs_close(got, expected, FUSED_RTOL, f'{arch} fused')


@pytest.mark.parametrize('arch', ['t0', 't1'])
def test_fused_backbone_matches_the_authors_outputs(arch):
    """The authors' weights and outputs (../shared/reference), through the fused model."""
    from collections import OrderedDict

    from conftest import reference_file

    from partialnet_mm import convert_state_dict
    ref = torch.load(reference_file(f'partialnet_{arch}_reference.pth'), weights_only=True)
    weights = OrderedDict(ref['cls_state_dict'])
    weights.update(ref['det_extra_state_dict'])
    model = PartialNet(arch=arch)
    model.load_state_dict(convert_state_dict(weights, backbone_only=True, arch=arch)[0])
    fused = model.eval().switch_to_deploy()
    with torch.no_grad():
        for inputs, feats in (('xdet', 'feats'), ('xwide', 'feats_wide')):
            # SPEC.md's tolerance for matching the authors (1e-4 x max|theirs|)
            assert_outputs_close(fused(ref[inputs]), ref[feats], 1e-4, f'{arch} {feats}')


@pytest.mark.parametrize('memory_format, shape', [
    ('contiguous', (2, 3, 96, 160)),  # NCHW path: 1x1 convolutions as one GEMM on the CPU
    ('channels_last', (1, 3, 64, 1024)),  # last stage 2x32: iRPE's logarithmic buckets
])
def test_fused_memory_formats_and_sizes(memory_format, shape):
    """t1 has every layer kind (PAT_ch, PAT_sf, PAT_sp); both layouts, odd sizes."""
    model = randomize_inference_state(PartialNet(arch='t1', out_indices=(1, 3)), seed=3).eval()
    fused = fused_copy(model, memory_format)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected, got = model(x), fused(x)
    assert_outputs_close(got, expected, FUSED_RTOL, f't1 {memory_format} {shape}')
    assert all(o.is_contiguous() for o in got)  # NCHW out, whatever the layout inside


class ConvMixer(SpatialMixer):
    """A user's mixer with no inference form: a plain 3x3 convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize('mixer', ['PConv', 'PATChannel', 'PATSelfAttention', 'custom'])
def test_fused_block_for_each_mixer(mixer):
    """Every block form, incl. plain PConv and a mixer without inference form (kept as it is,
    e.g. a DPConv before its export), with PAT_sp; the input stays intact."""
    spatial = ConvMixer() if mixer == 'custom' else build_mixer(dict(type=mixer), 32, 8)
    block = PartialNetBlock(spatial, 32, mlp_ratio=2., drop_path=0., act_cfg=dict(type='GELU'),
                            norm_cfg=dict(type='BN'), use_spatial_attn=True)
    randomize_inference_state(block, seed=4).eval()
    fused = switch_to_deploy(copy.deepcopy(block))
    x = torch.randn(2, 32, 9, 11)
    x_before = x.clone()
    with torch.no_grad():
        expected, got = block(x), fused(x)
    assert_outputs_close([got], [expected], FUSED_RTOL, f'{mixer} block')
    assert torch.equal(x, x_before), 'the fused block must not modify its input'
    assert not any(isinstance(m, _BatchNorm) for m in fused.modules())


@pytest.mark.parametrize('arch', ['t0', 't1'])
def test_folded_state_dict_loads_into_a_deploy_model(arch):
    """switch_to_deploy() then save == PartialNet(deploy=True) then load, strictly."""
    model = randomize_inference_state(PartialNet(arch=arch), seed=8).eval()
    folded = fused_copy(model)
    built = PartialNet(arch=arch, deploy=True)
    built.load_state_dict(folded.state_dict(), strict=True)
    assert not built.training and not any(p.requires_grad for p in built.parameters())
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        assert_outputs_close(built(x), model(x), FUSED_RTOL, f'{arch} deploy=True')
    with pytest.raises(ValueError, match='not folded.*deploy=False'):
        PartialNet(arch=arch, deploy=True).load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match='folded.*deploy=True'):
        PartialNet(arch=arch).load_state_dict(folded.state_dict())


def test_fused_classifier_equals_unfused():
    model = randomize_inference_state(build_arch_model('t0', 'classifier')).eval()
    fused = switch_model_to_deploy(copy.deepcopy(model))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = model(x, mode='tensor')
        got = fused(x, mode='tensor')
    assert_outputs_close([got], [expected], FUSED_RTOL, 't0 logits')


def test_switch_to_deploy_contract():
    model = randomize_inference_state(PartialNet(arch='t0'))
    model.eval()
    with pytest.raises(ValueError, match=r"memory_format must be one of \('auto'"):
        model.switch_to_deploy('nhwc')
    state = copy.deepcopy(model.state_dict())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        first = model.switch_to_deploy()(x)
        again = model.switch_to_deploy()(x)  # idempotent
        nchw = model.switch_to_deploy('contiguous')(x)  # only the layout changes
    assert_outputs_close(again, first, 0, 'second switch')
    assert_outputs_close(nchw, first, FUSED_RTOL, 'layout change')
    assert all(not p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match='switched to deploy .* cannot be trained'):
        model.train()
    with pytest.raises(RuntimeError, match='inference-only'):
        model.stages[0].blocks[0].train()
    with pytest.raises(ValueError, match='not folded'):  # load weights before switching
        model.load_state_dict(state)
    with pytest.raises(RuntimeError, match='--fuse .* training mode'):
        switch_model_to_deploy(PartialNet(arch='t0'))


def test_irpe_bias_is_cached_per_size_and_follows_the_table():
    rpe = randomize_inference_state(EuclideanRelativePositionBias(num_heads=2))
    bias = rpe.cached_bias((3, 5))
    assert rpe.cached_bias((3, 5)) is bias  # gathered once per size
    assert torch.equal(bias, rpe((3, 5)))
    assert rpe.cached_bias((5, 3)) is not bias and rpe.cached_bias((5, 3)).shape == (1, 2, 15, 15)
    with torch.no_grad():
        rpe.bias_table.add_(1.)  # e.g. loading other weights: the cache must not go stale
    fresh = rpe.cached_bias((3, 5))
    assert fresh is not bias and torch.equal(fresh, rpe((3, 5)))
    assert torch.equal(fresh, bias + 1)


def test_fuse_refuses_other_backbones():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        resnet = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=512)))
    with pytest.raises(ValueError, match='ResNet has no switch_to_deploy'):
        switch_model_to_deploy(resnet.eval())


# ------------------------------------------------------------------ ONNX
@pytest.fixture(scope='module')
def onnxruntime():
    return pytest.importorskip(
        'onnxruntime', reason='onnxruntime is not installed (pip install onnx onnxruntime, '
        'listed in requirements/tests.txt); the ONNX export test needs it to run the file')


def _onnx_outputs(ort, path, x):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return [torch.from_numpy(o) for o in session.run(None, {'input': x.numpy()})]


@pytest.mark.parametrize('fuse', [True, False], ids=['fused', 'unfused'])
def test_onnx_backbone_dynamic_shapes_match_pytorch(onnxruntime, tmp_path, fuse):
    model = randomize_inference_state(PartialNet(arch='t0'), seed=5).eval()
    ckpt = tmp_path / 't0.pth'
    torch.save(model.state_dict(), ckpt)
    out = str(tmp_path / 't0.onnx')
    result = export_onnx(out, arch='t0', checkpoint=str(ckpt), fuse=fuse)
    assert result['output_names'] == ['feat0', 'feat1', 'feat2', 'feat3']
    # the export size, then another batch and a wide input (iRPE's logarithmic buckets)
    for shape in [(1, 3, 224, 224), (2, 3, 64, 1024)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x)
        assert_outputs_close(_onnx_outputs(onnxruntime, out, x), expected, ONNX_RTOL,
                             f'onnx {"fused" if fuse else "unfused"} {shape}')


def test_onnx_classifier_from_config(onnxruntime, tmp_path):
    model = randomize_inference_state(build_arch_model('t0', 'classifier'), seed=6).eval()
    ckpt = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'cls.onnx')
    result = export_onnx(out, config=osp.join(ROOT, 'configs', 'partialnet_t0_imagenet.py'),
                         checkpoint=str(ckpt), fuse=True, verify=True)
    assert result['output_names'] == ['logits']
    assert len(result['errors']) == 2 and max(result['errors'].values()) <= ONNX_RTOL
    for shape in [(1, 3, 224, 224), (3, 3, 160, 288)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x, mode='tensor')
        got = _onnx_outputs(onnxruntime, out, x)
        assert got[0].shape == (shape[0], 1000)
        assert_outputs_close(got, [expected], ONNX_RTOL, f'onnx logits {shape}')


# ------------------------------------------------------------------ analysis
def test_benchmark_compares_naive_and_fused():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sources = model_sources(['t0'], 'backbone', [osp.join(
            ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_demo.py')],
            ['model.test_cfg.rpn.max_per_img=10'], shape=(64, 64))  # small heads
        rows = benchmark_inference(sources, ['naive', 'fused'], batch=2,
                                   device=torch.device('cpu'), warmup=1, runs=2)
    finally:
        torch.set_num_threads(threads)
    assert [(r['model'].split('/')[-1], r['form']) for r in rows] == [
        ('t0 backbone', 'naive'), ('t0 backbone', 'fused'),
        ('mask_rcnn_partialnet_t0_demo.py', 'naive'), ('mask_rcnn_partialnet_t0_demo.py', 'fused')]
    for r in rows:
        assert r['throughput'] > 0 and r['latency_ms'] > 0 and r['input'] == '64x64'
        assert ('speedup' in r) == (r['form'] == 'fused')
    table = format_table(rows, '# header')
    assert '| t0 backbone' in table and 'speed-up' in table


def test_machine_description_names_the_allocator(monkeypatch):
    for key in ('LD_PRELOAD', ) + MALLOC_ENV:
        monkeypatch.delenv(key, raising=False)
    assert machine_description(torch.device('cpu')).endswith(', default malloc')
    monkeypatch.setenv('MALLOC_MMAP_MAX_', '0')
    monkeypatch.setenv('LD_PRELOAD', '/usr/lib/libjemalloc.so.2:/usr/lib/libfoo.so')
    assert machine_description(torch.device('cpu')).endswith(
        ', libjemalloc.so.2 MALLOC_MMAP_MAX_=0')


def test_benchmark_rejects_unknown_arch():
    with pytest.raises(ValueError, match="Unknown PartialNet arch 't9'"):
        model_sources(['t9'])[0].build()


def test_flops(capsys):
    rows = measure(['t0'], [osp.join(ROOT, 'configs', 'demo', 'fpn_partialnet_t0_demo.py')],
                   shape=(224, 224))
    t0, seg = rows
    assert t0['params'] == SPEC_T0_CLASSIFIER_PARAMS
    # the two attention products of the 2 last-stage blocks: 4 heads, 7x7 tokens, head dim 48
    assert t0['attention_flops'] == 2 * (2 * 4 * 49 * 49 * 48)
    assert 0.2e9 < t0['flops'] < 0.3e9  # the paper's T0: 0.25 G
    assert seg['flops'] > t0['flops'] and seg['attention_flops'] == t0['attention_flops']
    assert re.search(r'\| t0 classifier +\| 224x224 +\| 3\.486 M +\| 0\.23\d G',
                     flops_table(rows))


def test_flops_are_counted_on_the_authors_form_and_the_model_keeps_its_own():
    model = PartialNet(arch='t0').eval()
    x = torch.randn(1, 3, 224, 224)
    authors = FlopAnalyzer(set_naive_forward(copy.deepcopy(model)), (x, ))
    ours = FlopAnalyzer(copy.deepcopy(model), (x, ))
    assert ours.total() != authors.total()  # the tracer sees the two forms differently
    counted = count_flops(model, (x, ))
    # mmengine alone does not count scaled_dot_product_attention
    assert counted['flops'] - counted['attention_flops'] == authors.total()
    assert not any(m.naive for m in model.modules() if hasattr(type(m), 'naive'))


def test_installed_config_paths():
    cfg = load_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
    assert cfg.model.backbone.type == 'ResNet'
    with pytest.raises(FileNotFoundError, match='did you mean mmdet::mask_rcnn/'):
        load_config('mmdet::mask-rcnn/mask-rcnn_r50_fpn_1x_coco.py')


def _classifier_demo(tmp_path):
    """The classification demo config, a tiny demo set and a checkpoint with non-trivial
    BN statistics (saved as a Runner would: meta with the config)."""
    from partialnet_mm.tooling.demo_data import make_imagenet_demo
    config = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_demo.py')
    data_root = str(tmp_path / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=1, num_val_per_class=2)
    model = randomize_inference_state(build_arch_model('t0', 'classifier', num_classes=4), seed=7)
    ckpt = tmp_path / 'ckpt.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=load_config(config).pretty_text)), ckpt)
    return config, data_root, model, str(ckpt)


def _scores(path):
    import pickle
    with open(path, 'rb') as f:
        return torch.stack([p['pred_score'] for p in pickle.load(f)])


def test_fuse_and_the_folded_checkpoint_give_the_same_predictions(tmp_path, monkeypatch):
    config, data_root, model, ckpt = _classifier_demo(tmp_path)
    switched = []
    original = PartialNet.switch_to_deploy

    def recording_switch(self, *args, **kwargs):
        switched.append(self.stem.norm.running_mean.clone())  # the checkpoint is loaded
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PartialNet, 'switch_to_deploy', recording_switch)
    options = data_root_options(data_root)
    for name, fuse in (('plain', False), ('fused', True)):
        run_test(config, ckpt, str(tmp_path / name), out=str(tmp_path / f'{name}.pkl'),
                 fuse=fuse, cfg_options=options)
    assert len(switched) == 1  # fuse folded the backbone, after loading the checkpoint
    assert torch.equal(switched[0], model.backbone.stem.norm.running_mean)
    monkeypatch.undo()

    folded = str(tmp_path / 'folded.pth')
    info = fold_checkpoint(ckpt, folded)  # the config stored in the checkpoint
    assert info['max_rel_diff'] <= FUSED_RTOL
    stored = torch.load(folded, weights_only=True)
    assert 'backbone.stem.conv.bias' in stored['state_dict']
    assert torch.equal(stored['state_dict']['head.fc.weight'], model.head.fc.weight)
    run_test(config, folded, str(tmp_path / 'deploy'), out=str(tmp_path / 'deploy.pkl'),
             cfg_options=options + ['model.backbone.deploy=True'])
    plain = _scores(tmp_path / 'plain.pkl')
    assert len(plain) == 8
    for name in ('fused', 'deploy'):
        assert_outputs_close([_scores(tmp_path / f'{name}.pkl')], [plain], FUSED_RTOL, name)


@pytest.mark.slow
def test_mmpretrain_own_test_tool_evaluates_the_folded_checkpoint(tmp_path):
    import subprocess
    import sys

    import mmpretrain
    config, data_root, _, ckpt = _classifier_demo(tmp_path)
    folded, deploy_config = str(tmp_path / 'folded.pth'), str(tmp_path / 'deploy_cfg.py')
    fold_checkpoint(ckpt, folded, config=config, out_config=deploy_config)
    tool = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'test.py')
    result = subprocess.run(
        [sys.executable, tool, deploy_config, folded, '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', *data_root_options(data_root)], capture_output=True, text=True,
        cwd=tmp_path, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1' in result.stdout + result.stderr
    assert 'missing keys' not in (result.stdout + result.stderr).lower()


def test_a_detector_computes_the_same_in_every_form():
    """Mask R-CNN end to end (RoIAlign included, which reads NCHW memory): the naive form,
    the training path and the folded form give the same RoI head outputs and losses."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import DefaultScope

    from partialnet_mm.models import set_naive_forward
    cfg = load_config(osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_demo.py'))
    torch.manual_seed(9)  # the weights init_weights draws
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = randomize_inference_state(MODELS.build(cfg.model), seed=9)
        model.init_weights()
        randomize_inference_state(model, seed=9)
        packed = demo_mm_inputs(2, [[3, 256, 320]] * 2, num_items=[3, 2], num_classes=4,
                                with_mask=True)
        data = model.data_preprocessor(packed, False)
        naive = set_naive_forward(copy.deepcopy(model)).eval()
        fused = switch_model_to_deploy(copy.deepcopy(model).eval())

        def head_outputs(detector, proposals=None):
            """RPN outputs, and RoI head outputs for the given proposals (the same for every
            form: with random weights, near-tied scores could otherwise pick other boxes)."""
            feats = detector.extract_feat(data['inputs'])
            rpn = [t for level in detector.rpn_head(feats) for t in level]
            if proposals is None:
                proposals = detector.rpn_head.predict(feats, data['data_samples'],
                                                      rescale=False)
            return rpn, detector.roi_head.forward(feats, proposals, data['data_samples']), \
                proposals

        with torch.no_grad():
            rpn_n, roi_n, proposals = head_outputs(naive)
            for form, other in (('ours', model.eval()), ('fused', fused)):
                rpn, roi, _ = head_outputs(other, proposals)
                assert_outputs_close(rpn, rpn_n, 1e-4, f'{form} RPN outputs')
                assert_outputs_close(roi, roi_n, 1e-4, f'{form} RoI head outputs')
        train_data = model.data_preprocessor(packed, True)
        torch.manual_seed(0)
        naive_losses = naive.train()(**train_data, mode='loss')
        torch.manual_seed(0)
        losses = model.train()(**train_data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        a = sum(v.sum() for v in (losses[key] if isinstance(losses[key], list)
                                  else [losses[key]]))
        b = sum(v.sum() for v in (naive_losses[key] if isinstance(naive_losses[key], list)
                                  else [naive_losses[key]]))
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5), key
