"""Our PartialNet reproduces the authors' implementation from their weights (../shared/reference)."""
import json
from collections import OrderedDict

import pytest
import torch
from conftest import reference_file
from mmengine.runner import load_checkpoint

from partialnet_mm import PartialNet, convert_state_dict
from partialnet_mm.apis import convert_checkpoint_file

ALL_ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
RTOL = 1e-4  # max |ours - theirs| <= RTOL * max |theirs|, per tensor


def assert_close_to_reference(ours, theirs, what):
    assert ours.shape == theirs.shape, f'{what}: shape {ours.shape} vs {theirs.shape}'
    err = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    assert err <= RTOL * scale, f'{what}: max|diff| {err:.3g} > {RTOL} * {scale:.3g}'


def build_classifier(arch, num_classes=1000):
    """mmpretrain's ImageClassifier around our backbone and head, as a config builds it."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as CLS_MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return CLS_MODELS.build(
            dict(type='ImageClassifier',
                 backbone=dict(type='PartialNet', arch=arch, out_indices=(3, ),
                               with_out_norm=False),
                 head=dict(type='PartialNetClsHead', arch=arch, num_classes=num_classes)))


def convert_file(tmp_path, state_dict, backbone_only=False, arch=None):
    src, dst = tmp_path / 'authors.pth', tmp_path / 'converted.pth'
    torch.save(state_dict, src)
    convert_checkpoint_file(str(src), str(dst), backbone_only=backbone_only, arch=arch)
    return dst


@pytest.fixture(scope='module', params=['t0', 't1'])
def reference(request):
    return request.param, torch.load(
        reference_file(f'partialnet_{request.param}_reference.pth'), weights_only=True)


def test_backbone_matches_authors_features(reference, tmp_path):
    arch, ref = reference
    weights = OrderedDict(ref['cls_state_dict'])
    weights.update(ref['det_extra_state_dict'])
    dst = convert_file(tmp_path, weights, backbone_only=True)
    model = PartialNet(arch=arch)
    load_checkpoint(model, str(dst), strict=True)
    model.eval()
    with torch.no_grad():
        for inputs, feats in (('xdet', 'feats'), ('xwide', 'feats_wide')):
            outs = model(ref[inputs])
            assert len(outs) == len(ref[feats]) == 4
            for i, (ours, theirs) in enumerate(zip(outs, ref[feats])):
                assert_close_to_reference(ours, theirs, f'{arch} {feats}[{i}]')


def test_classifier_matches_authors_logits(reference, tmp_path):
    arch, ref = reference
    dst = convert_file(tmp_path, ref['cls_state_dict'], arch=arch)
    model = build_classifier(arch)
    load_checkpoint(model, str(dst), strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(ref['x224'], mode='tensor')
    assert_close_to_reference(logits, ref['logits'], f'{arch} logits')


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_manifest_structure(arch):
    """Parameter count and every key/shape of the authors' model, for all six variants."""
    manifest = json.load(open(reference_file(f'partialnet_{arch}_manifest.json')))
    assert manifest['arch'] == arch
    model = build_classifier(arch)
    assert sum(p.numel() for p in model.parameters()) == manifest['num_params']

    generator = torch.Generator().manual_seed(0)
    shapes = dict(manifest['cls_state_dict_shapes'])
    shapes.update(manifest['det_extra_state_dict_shapes'])
    random_weights = OrderedDict(
        (k, torch.rand(s, generator=generator) if s else torch.tensor(3))
        for k, s in shapes.items())

    classifier_sd, info = convert_state_dict(
        OrderedDict((k, random_weights[k]) for k in manifest['cls_state_dict_shapes']))
    assert info['arch'] == arch and info['num_classes'] == 1000
    result = model.load_state_dict(classifier_sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    backbone_sd, info = convert_state_dict(random_weights, backbone_only=True, arch=arch)
    backbone = PartialNet(arch=arch)
    result = backbone.load_state_dict(backbone_sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # every authors' tensor landed somewhere, unchanged
    assert sum(v.numel() for v in backbone_sd.values()) + sum(
        v.numel() for k, v in classifier_sd.items() if k.startswith('head.')) == sum(
            v.numel() for v in random_weights.values())

    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.rand(1, 3, 320, 480))
    assert [list(o.shape) for o in outs] == manifest['feats_shapes']
