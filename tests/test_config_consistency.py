"""Every config is a plain mmengine config whose spelled-out values agree with the arch table.

The configs write each variant's values out (arch, checkpoint, the dense-prediction
backbones' stochastic depth, the neck's and heads' ``in_channels``, the recipe's hooks), as
OpenMMLab's own configs do; what keeps them consistent is this file, not code run by the
configs: widths and drop-path rates against :data:`~partialnet_mm.models.archs.ARCH_SETTINGS`,
checkpoint names against the arch, the final-crop switch against the training pipeline. It
is generic over families: the modules reading the backbone are found by their keys in the
resolved config (a neck, else the heads), so new families are covered as they are added.
``configs/deploy/`` (mmdeploy's deploy configs, not model configs) is skipped.
"""
import ast
import copy
import functools
import glob
import os.path as osp

import pytest
import torch
from conftest import ROOT
from mmengine.config import Config

from partialnet_mm import partialnet_channels
from partialnet_mm.models.archs import parse_arch
from partialnet_mm.runner.config import config_scope

CONFIGS = osp.join(ROOT, 'configs')
NOT_MODEL_CONFIGS = ('deploy', )  # mmdeploy's deploy configs
PROJECT_HOOKS = ('RandomStateHook', 'NonFiniteLossHook')


def config_files(bases: bool = False):
    """Every config file (``configs/``-relative), ``_base_`` fragments only with ``bases``."""
    found = []
    for path in sorted(glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, CONFIGS).replace(osp.sep, '/')
        top = rel.split('/')[0]
        if top in NOT_MODEL_CONFIGS or (top == '_base_' and not bases):
            continue
        found.append(rel)
    return found


MODEL_CONFIGS = config_files()


def load(rel):
    return Config.fromfile(osp.join(CONFIGS, rel))


# ---------------------------------------------------------------------------- what a config is
@pytest.mark.parametrize('rel', config_files(bases=True))
def test_config_is_plain_and_imports_no_project_code(rel):
    """Dicts, lists and ``_base_`` inheritance; ``custom_imports`` is how our package loads."""
    with open(osp.join(CONFIGS, rel)) as f:
        tree = ast.parse(f.read())
    imports = [f'line {n.lineno}: {ast.unparse(n)}' for n in ast.walk(tree)
               if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not imports, (
        f'configs/{rel} imports code ({imports}). Configs are plain mmengine configs: write '
        f'the values out (the arch table is in partialnet_mm/models/archs.py) and let '
        f'tests/test_config_consistency.py check them.')
    side_keys = {'partialnet_backbone', 'partialnet_optim_wrapper', 'backbone_out_indices'}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    assert not assigned & side_keys, (
        f'configs/{rel} routes values through side keys {sorted(assigned & side_keys)}; put '
        f'the backbone in model= (configs/_base_/models/) and the optimizer in optim_wrapper=')


# ---------------------------------------------------------------------------- consistency
def backbone_readers(model):
    """``(path, module cfg)`` of what reads the backbone's features: the neck if there is
    one (what follows it reads the neck), else every head with ``in_channels``."""
    neck = model.get('neck')
    if isinstance(neck, (list, tuple)):
        neck = neck[0] if neck else None
    if neck:
        return [('model.neck', neck)]
    return [(f'model.{key}', value) for key, value in model.items()
            if isinstance(value, dict) and key != 'backbone' and 'in_channels' in value]


def expected_in_channels(module, widths):
    """The ``in_channels`` a module reading features of ``widths`` must have: all of them,
    or those its ``in_index`` picks (mmseg's heads)."""
    index = module.get('in_index')
    if index is None:
        return list(widths)
    if isinstance(index, int):
        return widths[index]
    return [widths[i] for i in index]


def consistency_problems(cfg, rel):
    """What in ``cfg`` disagrees with the arch table, each with where and how to fix it."""
    where = f'configs/{rel} (or the _base_ that sets it)'
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    if backbone.get('type') != 'PartialNet':
        return [f'configs/{rel}: model.backbone is not a PartialNet']
    arch = backbone.get('arch', 't0')
    name = arch if isinstance(arch, str) else 'custom'
    widths = list(parse_arch(arch)['embed_dims'])
    out_indices = backbone.get('out_indices', (0, 1, 2, 3))
    returned = partialnet_channels(arch, out_indices)
    problems = []
    for path, module in backbone_readers(model):
        if module.get('type') == 'PartialNetClsHead':  # takes its width from its own arch
            if module.get('arch') != arch:
                problems.append(f'{path}.arch is {module.get("arch")!r} but the backbone is '
                                f'{arch!r}: set head=dict(arch={arch!r}) in {where}')
            continue
        expected = expected_in_channels(module, returned)
        if module.get('in_channels') != expected:
            problems.append(
                f'{path}.in_channels is {module.get("in_channels")} but PartialNet-{name} '
                f'with out_indices {tuple(out_indices)} returns {returned} (stage widths '
                f'{widths}): set {path[len("model."):]}=dict(in_channels={expected}) in '
                f'{where}')
    if model.get('type') != 'ImageClassifier':
        problems += drop_path_problems(backbone, arch, name, where)
    init_cfg = backbone.get('init_cfg') or {}
    if init_cfg.get('type') == 'Pretrained':
        problems.append(f"model.backbone.init_cfg type 'Pretrained' is mmengine's spelling, "
                        f"which PartialNet reads as its checked loader: write type="
                        f"'PartialNetPretrained' in {where}")
    if init_cfg.get('type') == 'PartialNetPretrained' and isinstance(arch, str):
        checkpoint = str(init_cfg.get('checkpoint'))
        if f'partialnet_{arch}_' not in osp.basename(checkpoint):
            problems.append(
                f'model.backbone.init_cfg.checkpoint {checkpoint!r} does not name the arch '
                f'{arch!r}: set checkpoint=\'checkpoints/partialnet_{arch}_in1k.pth\' in '
                f'{where}')
    hooks = [h.get('type') for h in cfg.get('custom_hooks', [])]
    missing = [h for h in PROJECT_HOOKS if h not in hooks]
    if missing:
        problems.append(f'custom_hooks {hooks} lack the project\'s {missing}: a config that '
                        f'sets custom_hooks writes them too, e.g. custom_hooks=[*_base_.'
                        f'custom_hooks, ...], in {where}')
    if model.get('type') == 'ImageClassifier':
        problems += final_crop_problems(cfg, where)
    return problems


def drop_path_problems(backbone, arch, name, where):
    """A detection or segmentation backbone writes its stochastic depth, and it is the
    arch's ImageNet rate (what the backbone takes when none is written)."""
    rate = parse_arch(arch)['drop_path_rate']
    if 'drop_path_rate' not in backbone:
        return [f'model.backbone.drop_path_rate is not written (the backbone would take '
                f'PartialNet-{name}\'s ImageNet rate {rate} unseen): set backbone=dict('
                f'drop_path_rate={rate}) in {where}']
    if backbone['drop_path_rate'] != rate:
        return [f'model.backbone.drop_path_rate is {backbone["drop_path_rate"]} but '
                f'PartialNet-{name}\'s ImageNet rate is {rate}: set backbone=dict('
                f'drop_path_rate={rate}) in {where}']
    return []


def final_crop_problems(cfg, where):
    """The recipe's final-crop switch: a ``SwitchRecipeHook`` whose pipeline is the training
    pipeline with a larger ``RandomResizedCrop``, nothing else changed (a variant that changes
    its pipeline must write the hook again with its own)."""
    switches = [h for h in cfg.get('custom_hooks', []) if h.get('type') == 'SwitchRecipeHook']
    fix = ('write custom_hooks=[dict(type=\'SwitchRecipeHook\', schedule=[dict(action_epoch=..., '
           'train_pipeline=final_train_pipeline)]), ...] with final_train_pipeline = the '
           f'training pipeline at the final crop size, in {where}')
    if len(switches) != 1 or len(switches[0].get('schedule', [])) != 1:
        return [f'custom_hooks have no single final-crop SwitchRecipeHook: {fix}']
    train = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    final = copy.deepcopy(switches[0].schedule[0].get('train_pipeline', []))
    crops = [(a.get('scale'), b.get('scale')) for a, b in zip(train, final)
             if a.get('type') == b.get('type') == 'RandomResizedCrop']
    for transform in train + final:
        if transform.get('type') == 'RandomResizedCrop':
            transform.pop('scale', None)
    if train != final or len(crops) != 1 or not crops[0][1] > crops[0][0]:
        return [f'the SwitchRecipeHook pipeline is not the training pipeline with a larger '
                f'RandomResizedCrop (train: {cfg.train_dataloader.dataset.pipeline}; switch: '
                f'{switches[0].schedule[0].get("train_pipeline")}): {fix}']
    return []


@pytest.mark.parametrize('rel', MODEL_CONFIGS)
def test_config_agrees_with_the_arch_table(rel):
    problems = consistency_problems(load(rel), rel)
    assert not problems, f'configs/{rel}:\n  ' + '\n  '.join(problems)


def test_the_consistency_check_fails_on_a_wrong_in_channels():
    """The check can fail, and says where and what to write."""
    cfg = load('mask_rcnn_partialnet_t2_coco.py')
    cfg.model.neck.in_channels = [32, 64, 128, 256]  # T0's widths
    (problem, ) = consistency_problems(cfg, 'mask_rcnn_partialnet_t2_coco.py')
    assert 'model.neck.in_channels is [32, 64, 128, 256]' in problem
    assert 'returns [64, 128, 256, 512]' in problem
    assert 'set neck=dict(in_channels=[64, 128, 256, 512]) in configs/' \
        'mask_rcnn_partialnet_t2_coco.py' in problem
    cfg = load('upernet_partialnet_l_ade20k.py')
    cfg.model.backbone.pop('drop_path_rate')  # a variant that left it to the arch
    (problem, ) = consistency_problems(cfg, 'upernet_partialnet_l_ade20k.py')
    assert "drop_path_rate is not written (the backbone would take PartialNet-l's ImageNet " \
        'rate 0.3 unseen): set backbone=dict(drop_path_rate=0.3) in configs/upernet_' in problem
    cfg.model.backbone.drop_path_rate = 0.1  # S's rate copied into the L config
    (problem, ) = consistency_problems(cfg, 'upernet_partialnet_l_ade20k.py')
    assert "drop_path_rate is 0.1 but PartialNet-l's ImageNet rate is 0.3" in problem
    cfg.model.backbone.drop_path_rate = 0.3
    cfg.model.backbone.init_cfg.type = 'Pretrained'  # mmengine's spelling
    (problem, ) = consistency_problems(cfg, 'upernet_partialnet_l_ade20k.py')
    assert "write type='PartialNetPretrained'" in problem
    cfg = load('partialnet_t1_imagenet.py')
    cfg.custom_hooks = cfg.custom_hooks[1:]  # a variant that forgot its switch
    assert 'no single final-crop SwitchRecipeHook' in consistency_problems(
        cfg, 'partialnet_t1_imagenet.py')[0]


# ---------------------------------------------------------------------------- the libraries' tools
def model_structure(cfg):
    """State-dict keys and shapes of the config's model, built on the meta device (no memory,
    no weights loaded)."""
    from mmengine.registry import MODELS, DefaultScope
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(config_scope(cfg)), torch.device('meta'):
        model = MODELS.build(model_cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize('rel', MODEL_CONFIGS)
def test_config_prints_in_full_and_dumps_to_the_same_model(rel, tmp_path):
    """What mmdet's tools/misc/print_config.py shows (``cfg.pretty_text``) is the whole
    config, and ``Config.dump`` then ``Config.fromfile`` builds the same model."""
    cfg = load(rel)
    text = cfg.pretty_text
    assert 'partialnet_mm' in text and "type='PartialNet'" in text
    dumped = tmp_path / osp.basename(rel)
    cfg.dump(str(dumped))
    reloaded = Config.fromfile(str(dumped))
    assert reloaded.model.to_dict() == cfg.model.to_dict(), rel
    assert reloaded.custom_hooks == cfg.custom_hooks
    assert model_structure(reloaded) == model_structure(cfg)


# One interpreter per library: it loads the library's print_config.py as a module (what
# ``python print_config.py CONFIG`` runs, minus starting Python again for each config) and
# calls its main() with each config on sys.argv, reporting per config what it printed or
# the error it raised.
PRINT_EVERY_CONFIG = r"""
import contextlib, importlib.util, io, json, sys, traceback
report, tool, configs = sys.argv[1], sys.argv[2], sys.argv[3:]
spec = importlib.util.spec_from_file_location('print_config', tool)
print_config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(print_config)
results = {}
for config in configs:
    sys.argv = [tool, config]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            print_config.main()
        results[config] = dict(ok=True, stdout=out.getvalue())
    except BaseException:
        results[config] = dict(ok=False, stdout=out.getvalue(), error=traceback.format_exc())
with open(report, 'w') as f:
    json.dump(results, f)
"""


@functools.lru_cache(maxsize=None)
def configs_by_library():
    """``{default_scope: configs}``, read once per process (each config loads in ~1 s)."""
    found = {}
    for rel in MODEL_CONFIGS:
        found.setdefault(load(rel).default_scope, []).append(rel)
    return found


@pytest.mark.slow
@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpretrain'])
def test_the_libraries_own_print_config_prints_every_config(library, tmp_path):
    """``<library>/.mim/tools/misc/print_config.py`` on every config of the library, in a
    fresh interpreter (the configs' ``custom_imports`` bring in partialnet_mm) and a scratch
    folder (mmseg's also dumps the config to ./example.py)."""
    import importlib
    import json
    import subprocess
    import sys

    by_library = configs_by_library()
    assert set(by_library) == {'mmdet', 'mmseg', 'mmpretrain'}, sorted(by_library)
    rels = by_library[library]
    tool = osp.join(osp.dirname(importlib.import_module(library).__file__), '.mim', 'tools',
                    'misc', 'print_config.py')
    report = tmp_path / 'printed.json'
    result = subprocess.run(
        [sys.executable, '-c', PRINT_EVERY_CONFIG, str(report), tool,
         *[osp.join(CONFIGS, rel) for rel in rels]],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, f'{library}: {result.stderr[-3000:]}'
    printed = json.loads(report.read_text())
    for rel in rels:
        outcome = printed[osp.join(CONFIGS, rel)]
        assert outcome['ok'], f'configs/{rel}: {outcome["error"][-2000:]}'
        assert "type='PartialNet'" in outcome['stdout'], rel
