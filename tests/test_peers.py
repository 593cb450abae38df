"""The peers benchmark's plumbing on tiny inputs (no timing is asserted): other backbones in
the project's detectors and segmentors, the authors' own code with our weights, the plot."""
import json
import os
import os.path as osp

import pytest
import torch

from partialnet_mm.analysis.models import build_arch_model
from partialnet_mm.tooling import peers
from partialnet_mm.tooling.authors_code import (AuthorsCodeError, authors_model,
                                                load_authors_partialnet, max_output_difference)

TINY = (64, 64)


def has_timm():
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def test_backbones_are_named_and_unknown_ones_listed():
    assert peers.display_name('t2') == 'PartialNet-T2'
    assert peers.display_name('r50') == 'ResNet-50'
    assert peers.display_name('fasternet_s') == 'FasterNet-S'
    with pytest.raises(ValueError, match='unknown backbone .*choose from'):
        peers.backbone_cfg('vgg16', dict(type='PartialNet', arch='t0'))


@pytest.mark.parametrize('name, widths', [('t0', [64, 128, 256]), ('r18', [128, 256, 512]),
                                          ('r50', [512, 1024, 2048])])
def test_the_neck_follows_the_swapped_backbone(name, widths):
    cfg = peers.peer_config('retinanet', name)  # the backbone returns stages 1-3
    assert cfg.model['neck']['in_channels'] == widths
    assert cfg.model['backbone']['init_cfg'] is None


def test_sync_bn_becomes_bn_for_one_process():
    cfg = peers.peer_config('fpn', 'r18')
    assert 'SyncBN' not in json.dumps(cfg.model)


@pytest.mark.parametrize('family', ['retinanet', 'rtmdet', 'fpn'])
def test_a_family_run_reports_every_measure(family):
    rows = peers.benchmark_family(family, ['t0', 'r18'], warmup=0, runs=1, train_batch=1,
                                  hw=TINY)
    assert [r['backbone'] for r in rows] == ['PartialNet-T0', 'ResNet-18']
    for row in rows:
        for key in ('params_m', 'gflops', 'backbone_neck_ms', 'full_ms', 'train_step_s',
                    'peak_mb'):
            assert row[key] > 0, (family, key)
        assert row['input'] == '64x64'
    assert rows[0]['full_vs_first'] == 1.0
    table = peers.format_peers_table(rows, '# header')
    assert 'ResNet-18' in table and 'peak MB' in table


def test_the_fastest_form_folds_partialnet_and_fuses_bn():
    model = peers.PeerModel('mask_rcnn', 't0', hw=TINY)
    assert model.infer_model.backbone.deploy_memory_format  # folded
    norms = [m for m in model.infer_model.neck.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert not norms
    resnet = peers.PeerModel('mask_rcnn', 'r18', hw=TINY)
    assert not [m for m in resnet.infer_model.backbone.modules()
                if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.skipif(not has_timm(), reason='timm (the peers extra) is not installed')
def test_fasternet_through_mmpretrain_timm_backbone():
    cfg = peers.peer_config('mask_rcnn', 'fasternet_t0')
    assert cfg.model['backbone']['type'] == 'mmpretrain.TIMMBackbone'
    assert cfg.model['neck']['in_channels'] == [40, 80, 160, 320]
    rows = peers.benchmark_family('mask_rcnn', ['fasternet_t0'], 0, 1, 1, flops=False,
                                  hw=TINY)
    assert rows[0]['backbone'] == 'FasterNet-T0' and rows[0]['train_step_s'] > 0


def test_missing_timm_names_the_install_command(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == 'timm':
            raise ImportError('No module named timm')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_timm)
    with pytest.raises(ImportError, match=r'pip install "partialnet-mm\[peers\]"'):
        peers.backbone_cfg('fasternet_t0', dict(type='PartialNet'))


def test_authors_code_without_models_says_what_is_expected(tmp_path):
    with pytest.raises(AuthorsCodeError, match='expected a clone of https://github.com/haiduo/'
                                               'PartialNet .*partialnet.py'):
        load_authors_partialnet(str(tmp_path))


@pytest.fixture(scope='module')
def authors_module():
    path = os.environ.get('PARTIALNET_AUTHORS_CODE')
    if not path:
        pytest.skip('set PARTIALNET_AUTHORS_CODE to a clone of haiduo/PartialNet')
    return load_authors_partialnet(path)


@pytest.mark.parametrize('arch', ['t0', 't1', 't2'])
@pytest.mark.parametrize('kind', ['classifier', 'backbone'])
def test_the_authors_model_computes_with_our_weights(authors_module, arch, kind):
    ours = build_arch_model(arch, kind)
    theirs = authors_model(authors_module, arch, kind, ours)
    call = (lambda x: ours(x, mode='tensor')) if kind == 'classifier' else None
    assert max_output_difference(theirs, ours, scope_call=call) < 1e-4


def test_the_plot_is_written_from_the_report(tmp_path):
    from partialnet_mm.tooling.plot import load_rows, plot_peers
    from partialnet_mm.analysis.report import write_json_report
    rows = [dict(family='RetinaNet', backbone=b, input='64x64', params_m=p, full_ms=m)
            for b, p, m in [('PartialNet-T0', 10., 5.), ('ResNet-18', 20., 7.),
                            ('FasterNet-T0', 12., 6.)]]
    report = str(tmp_path / 'peers.json')
    write_json_report(report, '# header', rows)
    out = plot_peers(load_rows(report)['rows'], str(tmp_path / 'peers.png'))
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(ValueError, match='no row has'):
        plot_peers(rows, str(tmp_path / 'x.png'), x='gflops')
    with open(tmp_path / 'bad.json', 'w') as f:
        json.dump([1, 2], f)
    with pytest.raises(ValueError, match='not a benchmark report'):
        load_rows(str(tmp_path / 'bad.json'))
    assert osp.isfile(out)
    from partialnet_mm.tooling.plot import peers_matrix
    table = peers_matrix(rows)
    assert 'RetinaNet 64x64' in table and '| ResNet-18 ' in table and '20.0 M / 7.00 ms' in table
    assert '| 10.0 M / -  ' in peers_matrix(rows, ['params_m', 'gflops'])  # not measured
