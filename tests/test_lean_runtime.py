"""One library is enough, and the runtime stands apart from the project's tooling.

``pip install partialnet-mm`` pulls none of mmdet, mmseg and mmpretrain: each comes with its
extra. In an environment that has one of them only (the other two neither importable nor
installed as distributions), ``import partialnet_mm`` works, that library's demo config
trains, and a config of a missing library stops with the extra to install, in our tools as
in the libraries' own ``train.py``. ``import partialnet_mm`` loads no module of
``partialnet_mm.tooling``, and no runtime module imports one.
"""
import ast
import importlib.metadata
import json
import os
import os.path as osp
import re
import subprocess
import sys
import sysconfig
import venv

import pytest
from conftest import ROOT

from partialnet_mm.libraries import LIBRARIES

SITE = sysconfig.get_paths()['purelib']
REQUIREMENTS = osp.join(ROOT, 'requirements')
TOOLING = 'partialnet_mm.tooling'
# each library's demo: the smallest set it trains on and the options that make a run of two
# iterations ending in a validation
DEMOS = {
    'mmseg': dict(
        config='configs/demo/fpn_partialnet_t0_demo.py',
        data=('make_ade20k_demo', dict(num_train=4, num_val=1)), evaluator_ann=None,
        options=['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                 'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2']),
    'mmdet': dict(
        config='configs/demo/retinanet_partialnet_t0_demo.py',
        data=('make_coco_demo', dict(num_train=4, num_val=1)),
        evaluator_ann='annotations/instances_val2017.json',
        options=['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2']),
    'mmpretrain': dict(
        config='configs/demo/partialnet_t0_imagenet_demo.py',
        data=('make_imagenet_demo', dict(num_train_per_class=2, num_val_per_class=1)),
        evaluator_ann=None, options=['train_cfg.max_epochs=1', 'train_dataloader.batch_size=4']),
}


def requirement_names(lines):
    return [re.match(r'[A-Za-z0-9_.\-]+', line).group(0).lower() for line in lines
            if line.strip() and not line.startswith('#')]


def extra_requirements(extra):
    with open(osp.join(REQUIREMENTS, f'{extra}.txt')) as f:
        return requirement_names(f.readlines())


def built_requirements(tmp_path):
    """``{None: install_requires, extra: its requirements}`` as setup.py declares them (the
    ``requires.txt`` of ``setup.py egg_info``)."""
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    with open(tmp_path / 'partialnet_mm.egg-info' / 'requires.txt') as f:
        text = f.read()
    sections, current = {None: []}, None
    for line in text.splitlines():
        if line.startswith('['):
            current = line.strip('[]').split(':')[0]
            sections.setdefault(current, [])
        elif line.strip():
            sections[current].append(line)
    return {k: set(requirement_names(v)) for k, v in sections.items()}


def test_runtime_requirements_name_no_library_and_the_extras_do(tmp_path):
    built = built_requirements(tmp_path)
    assert built[None] == {'torch', 'torchvision', 'mmcv', 'mmengine', 'numpy'}
    per_library = {lib.extra: set(extra_requirements(lib.extra)) for lib in LIBRARIES.values()}
    for lib in LIBRARIES.values():
        assert lib.distribution in built[lib.extra], lib
        assert built[lib.extra] == per_library[lib.extra]
    assert built['all'] == set().union(*per_library.values())
    assert {'pycocotools', 'ftfy', 'regex'} <= built['all']
    assert {'tests', 'deploy', 'peers'} <= set(built)
    with open(osp.join(ROOT, 'tools', 'setup_env.sh')) as f:
        setup_env = f.read()
    stack = setup_env.split('STACK=(', 1)[1].split(')', 1)[0]
    for name in built['all']:  # the project's own environment still has everything
        assert re.search(rf'"{re.escape(name)}(==[^"]*)?"', stack, re.I), name


def hidden_entries(keep):
    """The site-packages entries of the libraries other than ``keep`` and of what only their
    extras install (pycocotools for mmdet; ftfy and regex for mmseg)."""
    kept = set(extra_requirements(LIBRARIES[keep].extra)) if keep else set()
    names = {name for lib in LIBRARIES.values() if lib.module != keep
             for name in extra_requirements(lib.extra)} - kept
    entries = set()
    for name in names:
        files = importlib.metadata.distribution(name).files
        entries.update(str(f).split('/')[0] for f in files)
    return entries & set(os.listdir(SITE))


def environment_with_only(keep, tmp_path):
    """A virtual environment with what this one has, less the libraries other than ``keep``
    (None: all three) and what only their extras install; returns its python. Its
    site-packages links to this one's entries, so nothing is installed."""
    env = tmp_path / f'env-{keep or "none"}'
    venv.EnvBuilder(with_pip=False, symlinks=True).create(str(env))
    site = sysconfig.get_paths(vars=dict(base=str(env), platbase=str(env)))['purelib']
    hidden = hidden_entries(keep)
    assert hidden, 'nothing to hide: the libraries are not installed in this environment'
    for entry in sorted(set(os.listdir(SITE)) - hidden):
        os.symlink(osp.join(SITE, entry), osp.join(site, entry))
    return osp.join(str(env), 'bin', 'python')


def run(python, args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run([python, *args], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=900)


# What runs in an environment without some libraries: sys.argv[1] is a JSON dict with the
# libraries that are `absent` (none of their modules may be loaded, before or after) and the
# configs `refused` with the extra their error must name.
PRELUDE = """
import json, os, sys
import partialnet_mm
from partialnet_mm.libraries import MissingLibraryError
from partialnet_mm.runner import load_config
args = json.loads(sys.argv[1])


def loaded_absent():
    return [m for m in sys.modules if m.split('.')[0] in args['absent']]


assert not loaded_absent(), loaded_absent()
for config, extra in args['refused']:
    try:
        load_config(config)
    except MissingLibraryError as err:
        assert f'pip install "partialnet-mm[{extra}]"' in str(err), str(err)
    else:
        raise AssertionError(f'{config} loaded without its library')
"""
WITHOUT_ANY_LIBRARY = PRELUDE + """
import importlib.util
import torch
from mmengine.registry import HOOKS, MODELS, TRANSFORMS
assert not [m for m in sys.modules if m.startswith('partialnet_mm.tooling')]
model = MODELS.build(dict(type='PartialNet', arch='t0')).eval()
with torch.no_grad():
    assert len(model(torch.randn(1, 3, 64, 64))) == 4
assert HOOKS.get('NonFiniteLossHook') and HOOKS.get('RandomStateHook')
assert TRANSFORMS.get('CheckSegLabels') and MODELS.get('PartialNetClsHead') is None
try:
    partialnet_mm.PartialNetClsHead
except MissingLibraryError as err:
    assert 'pip install "partialnet-mm[cls]"' in str(err), str(err)
else:
    raise AssertionError('PartialNetClsHead without mmpretrain')
spec = importlib.util.spec_from_file_location('train_tool', args['train_tool'])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
try:
    tool.main([args['seg_config']])
except SystemExit as stop:  # one line naming the extra, no traceback
    assert 'pip install "partialnet-mm[seg]"' in str(stop.code), stop.code
else:
    raise AssertionError('tools/train.py trained without mmseg')
assert not loaded_absent(), loaded_absent()
"""
TRAIN_ALONE = PRELUDE + """
from partialnet_mm.apis import train
from partialnet_mm.runner import data_root_options
from partialnet_mm.tooling import demo_data
root = os.path.abspath('data') + '/'
maker, kwargs = args['data']
getattr(demo_data, maker)(root, **kwargs)
ann = args['evaluator_ann']
options = data_root_options(root, root + ann if ann else None) + args['options']
runner = train(args['config'], 'work', cfg_options=options)
assert runner.iter == 2, runner.iter
assert not loaded_absent(), loaded_absent()
"""


def refused_demos(keep):
    """The demo configs of the libraries other than ``keep``, with the extra each needs."""
    return [(osp.join(ROOT, DEMOS[lib.module]['config']), lib.extra)
            for lib in LIBRARIES.values() if lib.module != keep]


def test_the_package_imports_without_any_library(tmp_path):
    python = environment_with_only(None, tmp_path)
    with open(tmp_path / 'scoped.py', 'w') as f:  # no `mmpretrain::` base: its default_scope
        f.write("default_scope = 'mmpretrain'\nmodel = dict(type='ImageClassifier')\n")
    args = dict(absent=sorted(LIBRARIES),
                refused=refused_demos(None) + [
                    (str(tmp_path / 'scoped.py'), 'cls'),
                    ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', 'det')],
                train_tool=osp.join(ROOT, 'tools', 'train.py'),
                seg_config=osp.join(ROOT, DEMOS['mmseg']['config']))
    result = run(python, ['-c', WITHOUT_ANY_LIBRARY, json.dumps(args)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.installs
@pytest.mark.parametrize('library', sorted(DEMOS))
def test_one_library_alone_trains_its_demo(library, tmp_path):
    python = environment_with_only(library, tmp_path)
    demo = DEMOS[library]
    args = dict(absent=sorted(set(LIBRARIES) - {library}), refused=refused_demos(library),
                data=demo['data'], evaluator_ann=demo['evaluator_ann'],
                options=demo['options'], config=osp.join(ROOT, demo['config']))
    result = run(python, ['-c', TRAIN_ALONE, json.dumps(args)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    if library == 'mmseg':  # a library's own train.py on a config of a missing one
        own_train = osp.join(SITE, 'mmseg', '.mim', 'tools', 'train.py')
        result = run(python, [own_train, osp.join(ROOT, DEMOS['mmdet']['config'])], tmp_path)
        assert result.returncode != 0
        assert 'mmdet is not installed' in result.stderr, result.stderr[-3000:]


def runtime_imports():
    """``{module: partialnet_mm modules it imports}`` for every module outside the tooling,
    imports inside functions included."""
    found = {}
    for folder, _, files in os.walk(osp.join(ROOT, 'partialnet_mm')):
        for name in files:
            path = osp.join(folder, name)
            module = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
            if not name.endswith('.py') or module.startswith(TOOLING):
                continue
            package = module.split('.')[:-1]
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    base = package[:len(package) - node.level + 1] if node.level else []
                    target = '.'.join(base + ([node.module] if node.module else []))
                    found.setdefault(module, set()).update(
                        [target] + [f'{target}.{a.name}' for a in node.names])
                elif isinstance(node, ast.Import):
                    found.setdefault(module, set()).update(a.name for a in node.names)
    return found


def test_no_runtime_module_imports_the_tooling():
    offenders = {m: sorted(t for t in targets if t.startswith(TOOLING))
                 for m, targets in runtime_imports().items()}
    assert not {m: t for m, t in offenders.items() if t}
    # the check sees relative imports: the tooling imports the runtime this way
    assert 'partialnet_mm.analysis.models' in runtime_imports()['partialnet_mm.deploy.onnx']

