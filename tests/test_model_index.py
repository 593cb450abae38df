"""The model index lists every config, in OpenMMLab's metafile format, with numbers that
partialnet_mm.model_index computes (tools/make_model_index.py regenerates it)."""
import os.path as osp

import pytest
from conftest import ROOT

from partialnet_mm.runner import load_config
from partialnet_mm.tooling.model_index import (COLLECTIONS, collection_of, list_configs,
                                               load_model_index, measure)


@pytest.fixture(scope='module')
def models():
    return load_model_index(ROOT)


def test_every_config_is_listed_once(models):
    configs = list_configs(ROOT)
    assert len(configs) >= 49 and 'configs/_base_/partialnet_mmdet_runtime.py' not in configs
    listed = [m['Config'] for m in models]
    assert sorted(listed) == configs, (
        'configs/metafile.yml is out of date: run python tools/make_model_index.py')
    assert len({m['Name'] for m in models}) == len(models)


def test_entries_follow_the_openmmlab_metafile_format(models):
    for model in models:
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        assert model['In Collection'] in COLLECTIONS
        metadata = model['Metadata']
        assert isinstance(metadata['Parameters'], int) and metadata['Parameters'] > 1e6
        assert isinstance(metadata['FLOPs'], int) and metadata['FLOPs'] > 1e7
        h, w = (int(s) for s in metadata['FLOPs Input'].split('x'))
        assert h >= 32 and w >= 32
        assert ('Epochs' in metadata) != ('Iterations' in metadata)


def test_the_families_differ_as_their_configs_say(models):
    by_name = {m['Name']: m for m in models}
    params = {arch: by_name[f'retinanet_partialnet_{arch}_coco']['Metadata']['Parameters']
              for arch in ('t0', 't1', 't2', 's', 'm', 'l')}
    assert list(params.values()) == sorted(params.values())  # bigger variant, more params
    mask_1x = by_name['mask_rcnn_partialnet_s_coco']['Metadata']
    mask_3x = by_name['mask_rcnn_partialnet_s_ms_3x_coco']['Metadata']
    assert mask_1x['Parameters'] == mask_3x['Parameters'] and mask_1x['Epochs'] == 12
    assert mask_3x['Epochs'] == 36
    assert by_name['upernet_partialnet_t0_ade20k']['Metadata']['Iterations'] == 160000
    assert by_name['cascade_mask_rcnn_partialnet_t0_ms_3x_coco']['In Collection'] == \
        'Cascade Mask R-CNN (PartialNet)'
    # one model type, two collections: RTMDet's box head or its instance head
    for arch in ('t0', 't1', 't2', 's', 'm', 'l'):
        assert by_name[f'rtmdet_partialnet_{arch}_coco']['In Collection'] == \
            'RTMDet (PartialNet)'
        assert by_name[f'rtmdet-ins_partialnet_{arch}_coco']['In Collection'] == \
            'RTMDet-Ins (PartialNet)'
    rtmdet = [by_name[f'rtmdet_partialnet_{a}_coco']['Metadata']['Parameters']
              for a in ('t0', 't1', 't2', 's', 'm', 'l')]
    assert rtmdet == sorted(rtmdet)
    assert by_name['rtmdet_partialnet_t0_coco']['Metadata']['Epochs'] == 100


@pytest.mark.parametrize('name', ['partialnet_t0_imagenet', 'upernet_partialnet_t0_ade20k'])
def test_listed_numbers_are_what_the_package_measures(models, name):
    entry = next(m for m in models if m['Name'] == name)
    cfg = load_config(osp.join(ROOT, entry['Config']))
    measured = measure(cfg)
    assert entry['Metadata']['Parameters'] == measured['params']
    assert entry['Metadata']['FLOPs'] == measured['flops']
    assert entry['In Collection'] == collection_of(cfg, entry['Config'])


def test_a_model_family_without_a_collection_is_named():
    from mmengine.config import Config
    cfg = Config(dict(default_scope='mmdet', model=dict(type='FCOS')))
    with pytest.raises(ValueError, match=r"x.py: no model-index collection for \('mmdet', "
                                         r"'FCOS', None\).*MODEL_COLLECTIONS"):
        collection_of(cfg, 'x.py')


def test_openmmlab_model_index_reader_loads_it():
    """``modelindex`` (the reader mim and mmpretrain use; an mmpretrain dependency) parses
    the index into models with their collection, FLOPs and parameters."""
    import modelindex
    index = modelindex.load(osp.join(ROOT, 'model-index.yml'))
    assert len(index.models) == len(list_configs(ROOT))
    assert {c.name for c in index.collections} == {m.in_collection for m in index.models}
    retinanet = next(m for m in index.models if m.name == 'retinanet_partialnet_t0_coco')
    assert retinanet.in_collection == 'RetinaNet (PartialNet)'
    assert retinanet.metadata.flops > 0 and retinanet.metadata.parameters > 0
