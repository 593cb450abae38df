"""Checkpoint conversion and pretrained loading: formats, inference, loud failures."""
import json
import warnings
from collections import OrderedDict

import pytest
import torch
from conftest import reference_file
from mmengine.model import initialize
from mmengine.runner import load_checkpoint

from partialnet_mm import PartialNet, convert_state_dict, load_checkpoint_file
from partialnet_mm.apis import convert_checkpoint_file
from partialnet_mm.checkpoint import CheckpointError, load_pretrained


def authors_state_dict(arch, det_norms=True, seed=0):
    """Random weights with exactly the authors' keys and shapes (from the manifest)."""
    manifest = json.load(open(reference_file(f'partialnet_{arch}_manifest.json')))
    shapes = dict(manifest['cls_state_dict_shapes'])
    if det_norms:
        shapes.update(manifest['det_extra_state_dict_shapes'])
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.rand(s, generator=g) if s else torch.tensor(0))
                       for k, s in shapes.items())


class HyperParameters(dict):
    """Stands for PyTorch-Lightning's AttributeDict: a class weights_only refuses."""


def test_lightning_checkpoint_converts_without_running_its_objects(tmp_path):
    weights = authors_state_dict('t0')
    ckpt = dict(epoch=299, state_dict=OrderedDict((f'model.{k}', v) for k, v in weights.items()),
                hyper_parameters=HyperParameters(lr=0.004))
    src, dst = tmp_path / 'partialnet_t0.ckpt', tmp_path / 'out.pth'
    torch.save(ckpt, src)
    with pytest.warns(UserWarning, match='inert stand-ins.*HyperParameters'):
        convert_checkpoint_file(str(src), str(dst), backbone_only=True, arch='t0')
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['arch'] == 't0'
    model = PartialNet(arch='t0')
    load_checkpoint(model, str(dst), strict=True)
    assert torch.equal(model.stem.conv.weight, weights['patch_embed.proj.weight'])


def test_default_output_is_an_image_classifier_checkpoint():
    weights = authors_state_dict('t1', det_norms=False)
    converted, info = convert_state_dict(dict(state_dict=weights))
    assert info == dict(arch='t1', num_classes=1000, with_out_norm=False, dropped=[])
    assert all(k.startswith(('backbone.', 'head.')) for k in converted)
    assert torch.equal(converted['head.feat_proj.weight'], weights['avgpool_pre_head.1.weight'])
    assert torch.equal(converted['head.fc.bias'], weights['head.bias'])
    assert torch.equal(converted['backbone.stages.3.blocks.1.mlp.spatial_attn.proj.weight'],
                       weights['stages.6.blocks.1.mlp.4.conv.weight'])
    assert torch.equal(converted['backbone.stages.2.downsample.conv.weight'],
                       weights['stages.3.reduction.weight'])


def test_unknown_keys_are_named():
    weights = authors_state_dict('t0')
    weights['stages.0.blocks.0.layer_scale'] = torch.ones(32)
    with pytest.raises(CheckpointError, match=r"stages\.0\.blocks\.0\.layer_scale"):
        convert_state_dict(weights)


def test_shape_mismatch_is_named():
    weights = authors_state_dict('t0')
    weights['stages.4.blocks.3.mlp.0.weight'] = torch.rand(10, 128, 1, 1)
    with pytest.raises(CheckpointError,
                       match=r'stages\.2\.blocks\.3\.mlp\.fc1\.weight: checkpoint \(10, 128, 1, 1\)'
                       r' vs model \(256, 128, 1, 1\)'):
        convert_state_dict(weights)


def test_asserted_arch_must_match(tmp_path):
    with pytest.raises(CheckpointError, match=r'not PartialNet-t2.*PartialNet-t0'):
        convert_state_dict(authors_state_dict('t0'), arch='t2')
    src = tmp_path / 'w.pth'
    torch.save(authors_state_dict('t0'), src)
    with pytest.raises(CheckpointError, match=r'not PartialNet-s.*PartialNet-t0'):
        convert_checkpoint_file(str(src), str(tmp_path / 'o.pth'), arch='s')
    assert not (tmp_path / 'o.pth').exists()


def test_our_own_checkpoint_is_not_converted_twice():
    ours, _ = convert_state_dict(authors_state_dict('t0'), backbone_only=True)
    with pytest.raises(CheckpointError, match='already uses our key names'):
        convert_state_dict(ours)


def test_pretrained_init_from_a_classifier_with_prefix(tmp_path):
    classifier, _ = convert_state_dict(authors_state_dict('t0', det_norms=False))
    path = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=classifier), path)
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=str(path),
                                                prefix='backbone.'))
    with pytest.warns(UserWarning, match=r"16 backbone tensors are not in .*\[.norm0\."):
        model.init_weights()
    assert torch.equal(model.stages[3].blocks[0].spatial_mixing.attn.qkv.weight,
                       classifier['backbone.stages.3.blocks.0.spatial_mixing.attn.qkv.weight'])


def test_pretrained_init_converts_authors_weights_on_the_fly(tmp_path):
    weights = authors_state_dict('t0')
    path = tmp_path / 'authors.pth'
    torch.save(dict(model=weights), path)
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing missing: no warning at all
        model.init_weights()
    assert torch.equal(model.norm2.running_var, weights['norm4.running_var'])


def test_pretrained_init_names_the_variant_it_looks_like(tmp_path):
    path = tmp_path / 't1.pth'
    torch.save(authors_state_dict('t1'), path)
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r'PartialNet-t0; the checkpoint looks like '
                       r'PartialNet-t1.*shape mismatches'):
        model.init_weights()


def test_pretrained_prefix_hint(tmp_path):
    classifier, _ = convert_state_dict(authors_state_dict('t0'))
    path = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=classifier), path)
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r"prefix='backbone\.'"):
        model.init_weights()


def test_missing_pretrained_file_stops_with_the_fix(tmp_path):
    """No silent training from scratch: the path, the conversion command and the explicit
    way to train from scratch are named."""
    absent = str(tmp_path / 'absent.pth')
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=absent))
    with pytest.raises(CheckpointError) as err:
        model.init_weights()
    message = str(err.value)
    assert absent in message and 'tools/convert_checkpoint.py' in message
    assert 'model.backbone.init_cfg=None' in message


def classifier_without(tmp_path, missing):
    """A converted T0 classifier checkpoint that lacks the backbone key ``missing``."""
    classifier, _ = convert_state_dict(authors_state_dict('t0', det_norms=False))
    del classifier[f'backbone.{missing}']
    path = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=classifier), path)
    return str(path), classifier


FC1 = 'stages.0.blocks.0.mlp.fc1.weight'


def test_the_checked_loader_alone_only_loads(tmp_path):
    """``PartialNetPretrained`` is applied as written: a key the file lacks keeps the value
    the backbone was built with (no initialisation runs under the load)."""
    path, classifier = classifier_without(tmp_path, FC1)
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=path,
                                                prefix='backbone.'))
    built = model.state_dict()[FC1].clone()
    with pytest.warns(UserWarning, match=r'17 backbone tensors are not in'):
        model.init_weights()
    assert torch.equal(model.state_dict()[FC1], built)
    qkv = 'stages.3.blocks.0.spatial_mixing.attn.qkv.weight'
    assert torch.equal(model.state_dict()[qkv], classifier[f'backbone.{qkv}'])


def test_mmengines_spelling_pretrained_keeps_doing_what_it_did(tmp_path):
    """``init_cfg=dict(type='Pretrained', ...)`` (the docs' spelling until the checked loader
    got a name) still means: the default init, then the checked load. The backbone states
    it in its ``init_cfg``, and draws and loads exactly what those two do."""
    path, classifier = classifier_without(tmp_path, FC1)
    old = dict(type='Pretrained', checkpoint=path, prefix='backbone.')
    torch.manual_seed(0)
    model = PartialNet(arch='t0', init_cfg=old)
    assert model.init_cfg == [*PartialNet.default_init_cfg,
                              dict(old, type='PartialNetPretrained')]
    torch.manual_seed(0)
    reference = PartialNet(arch='t0', init_cfg=[])
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match=r'17 backbone tensors are not in'):
        model.init_weights()
    after = torch.rand(3)
    torch.manual_seed(1)
    initialize(reference, PartialNet.default_init_cfg)
    with pytest.warns(UserWarning, match=r'17 backbone tensors are not in'):
        load_pretrained(reference, path, prefix='backbone.')
    assert torch.equal(torch.rand(3), after)
    theirs = reference.state_dict()
    for key, ours in model.state_dict().items():
        assert torch.equal(ours, theirs[key]), key
    assert model.state_dict()[FC1].std() < 0.03  # the key the file lacks: the authors' init
    # in a list, it becomes the checked loader, last (where mmengine applies 'Pretrained')
    listed = PartialNet(arch='t0', init_cfg=[old, dict(type='Constant', layer='LayerNorm',
                                                       val=2.)])
    assert listed.init_cfg == [dict(type='Constant', layer='LayerNorm', val=2.),
                               dict(old, type='PartialNetPretrained')]


def test_the_checked_loader_refuses_other_modules():
    with pytest.raises(TypeError, match=r"'PartialNetPretrained' loads a PartialNet backbone, "
                       r'not a Linear: put it in model.backbone.init_cfg'):
        initialize(torch.nn.Linear(2, 2), dict(type='PartialNetPretrained', checkpoint='x.pth'))
    with pytest.raises(ValueError, match="'PartialNetPretrained' needs a 'checkpoint'"):
        PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained')).init_weights()


def damaged_file(tmp_path, damage):
    """A checkpoint as a new user meets it after a failed download or copy."""
    path = tmp_path / f'{damage}.pth'
    if damage == 'truncated':
        torch.save(dict(state_dict=PartialNet(arch='t0').state_dict()), path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif damage == 'empty':
        path.write_bytes(b'')
    else:  # an HTML error page saved under the checkpoint's name
        path.write_text('<!DOCTYPE html><html><body>404 Not Found</body></html>')
    return str(path)


@pytest.mark.parametrize('damage, match', [
    ('truncated', r'is cut short \(\d+ bytes.*failed finding central directory.*interrupted '
                  r'download or copy.*Download or copy it again'),
    ('empty', r'is empty \(0 bytes\).*interrupted download or copy.*Download or copy it again'),
    ('html', r"is not a PyTorch checkpoint: it starts with b'<!DO'.*HTML error page.*download "
             r'it again'),
])
def test_damaged_checkpoint_files_name_the_file_the_cause_and_the_fix(damage, match, tmp_path):
    """The same message from every entry point: the package's loader, the backbone's
    Pretrained init, and mmengine's loader (load_from, --resume)."""
    path = damaged_file(tmp_path, damage)
    model = PartialNet(arch='t0', init_cfg=dict(type='PartialNetPretrained', checkpoint=path))
    for load in (lambda: load_checkpoint_file(path), model.init_weights,
                 lambda: load_checkpoint(torch.nn.Linear(1, 1), path)):
        with pytest.raises(CheckpointError, match=match) as err:
            load()
        assert str(err.value).startswith(path)
        assert 'arbitrary code' not in str(err.value)
