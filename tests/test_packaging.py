"""The wheel carries the configs, tools and model index in partialnet_mm/.mim, as OpenMMLab
packages do, and a user without a clone trains a demo from the installed package."""
import glob
import os
import os.path as osp
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

from partialnet_mm.tooling.model_index import list_configs


def run(argv, cwd, env=None, timeout=900):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (argv, (result.stdout + result.stderr)[-5000:])
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def wheel(session_store):
    """The project's wheel, built once per session (the tests that install it may run in
    different workers)."""
    out = session_store.folder('wheel', ROOT, lambda folder: run(
        [sys.executable, '-m', 'pip', 'wheel', ROOT, '--no-deps', '--no-build-isolation',
         '-w', folder], cwd=folder))
    wheels = glob.glob(osp.join(out, 'partialnet_mm-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install_elsewhere(wheel, tmp_path):
    """The wheel installed with ``pip install --no-deps --target``; returns that folder, a
    work folder outside any checkout and the environment that imports the installed copy."""
    target = tmp_path / 'site'
    run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--target', str(target), wheel],
        cwd=str(tmp_path))
    work = tmp_path / 'elsewhere'
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), PYTHONWARNINGS='ignore',
               OMP_NUM_THREADS='1')
    return target, work, env


@pytest.mark.slow
@pytest.mark.installs
def test_wheel_carries_every_config_the_tools_and_the_model_index(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    mim = 'partialnet_mm/.mim/'
    for config in list_configs(ROOT):
        assert mim + config in names, config
    assert mim + 'configs/_base_/partialnet_mmdet_runtime.py' in names  # bases too
    for tool in ('train.py', 'test.py', 'make_model_index.py', 'make_demo_data.py'):
        assert mim + 'tools/' + tool in names, tool
    assert mim + 'model-index.yml' in names and mim + 'configs/metafile.yml' in names
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]
    assert 'partialnet_mm/engine/optimizers.py' in names


@pytest.mark.slow
@pytest.mark.installs
def test_installed_package_trains_a_demo_without_a_clone(wheel, tmp_path):
    """docs/installation.md: the wheel installed elsewhere, run from a folder that is not a
    checkout, mmdet's own train.py on the config shipped inside the package."""
    target, work, env = install_elsewhere(wheel, tmp_path)
    package = run([sys.executable, '-c', 'import partialnet_mm, os; '
                   'print(os.path.dirname(partialnet_mm.__file__))'], cwd=str(work),
                  env=env).strip().splitlines()[-1]
    assert package == str(target / 'partialnet_mm')  # the installed copy, not a checkout
    run([sys.executable, '-c', 'from partialnet_mm.tooling.demo_data import make_coco_demo; '
         "make_coco_demo('data/coco_demo/', num_train=2, num_val=1)"], cwd=str(work), env=env)
    import mmdet
    mmdet_train = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    config = osp.join(package, '.mim', 'configs', 'demo', 'retinanet_partialnet_t0_demo.py')
    log = run([sys.executable, mmdet_train, config, '--cfg-options', 'train_cfg.max_epochs=1',
               'train_dataloader.batch_size=2', 'model.test_cfg.score_thr=0.0'],
              cwd=str(work), env=env)
    assert 'coco/bbox_mAP' in log
    assert osp.isfile(work / 'work_dirs' / 'retinanet_partialnet_t0_demo' / 'epoch_1.pth')


def mim(args, cwd, env=None):
    """OpenMMLab's ``mim`` command (openmim, installed by tools/setup_env.sh)."""
    pytest.importorskip('mim', reason='openmim is not installed (bash tools/setup_env.sh '
                        'installs it)')
    return run([sys.executable, '-m', 'mim', *args], cwd=cwd, env=env)


def mim_train_and_test(cwd, env, work_dir, expected_tools_dir):
    """``mim train``/``mim test partialnet_mm`` on the classification demo (by config name,
    which mim finds in the package's .mim/configs), and ``mim run`` of a project tool."""
    run([sys.executable, '-c', 'from partialnet_mm.tooling.demo_data import make_imagenet_demo; '
         "make_imagenet_demo('data/imagenet_demo', num_train_per_class=2, "
         'num_val_per_class=1)'], cwd=cwd, env=env)
    options = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
               'val_dataloader.batch_size=4', 'test_dataloader.batch_size=4']
    log = mim(['train', 'partialnet_mm', 'partialnet_t0_imagenet_demo.py', '--work-dir',
               work_dir, *options], cwd=cwd, env=env)
    assert osp.join(expected_tools_dir, 'train.py') in log  # the package's own tool ran
    assert 'accuracy/top1' in log
    checkpoint = osp.join(cwd, work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)
    log = mim(['test', 'partialnet_mm', 'partialnet_t0_imagenet_demo.py', '--checkpoint',
               checkpoint, '--work-dir', work_dir + '_test', *options], cwd=cwd, env=env)
    assert 'accuracy/top1' in log
    log = mim(['run', 'partialnet_mm', 'get_flops', '--arch', 't0'], cwd=cwd, env=env)
    assert osp.join(expected_tools_dir, 'get_flops.py') in log and 't0 classifier' in log


@pytest.mark.slow
@pytest.mark.installs
def test_mim_on_the_editable_install(tmp_path):
    """The README's install (tools/setup_env.sh): mim finds the checkout's tools through
    partialnet_mm/.mim."""
    pytest.importorskip('mim', reason='openmim is not installed (bash tools/setup_env.sh '
                        'installs it)')
    from mim.utils import get_installed_path
    package = get_installed_path('partialnet_mm')
    if osp.realpath(package) != osp.join(ROOT, 'partialnet_mm'):
        pytest.skip(f'partialnet_mm is not installed from this checkout in the develop layout '
                    f'tools/setup_env.sh makes (mim sees it at {package})')
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    mim_train_and_test(str(tmp_path), env, 'work', osp.join(package, '.mim', 'tools'))


@pytest.mark.slow
@pytest.mark.installs
def test_mim_on_an_installed_wheel(wheel, tmp_path):
    target, work, env = install_elsewhere(wheel, tmp_path)
    mim_train_and_test(str(work), env, 'work',
                       str(target / 'partialnet_mm' / '.mim' / 'tools'))


@pytest.mark.slow
@pytest.mark.installs
def test_wheel_builds_with_the_setuptools_openmim_leaves(tmp_path):
    """openmim's openxlab pins setuptools 60.2 (no ``editable_mode`` on build commands yet):
    the build still works and still ships the .mim files."""
    old = tmp_path / 'setuptools-60.2'
    fetched = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                              '--target', str(old), 'setuptools==60.2.0'],
                             capture_output=True, text=True, timeout=300)
    if fetched.returncode != 0:
        pytest.skip(f'setuptools 60.2.0 could not be installed from the package index: '
                    f'{fetched.stderr[-300:]}')
    env = dict(os.environ, PYTHONPATH=str(old))
    out = tmp_path / 'wheel'
    log = run([sys.executable, '-m', 'pip', 'wheel', ROOT, '--no-deps', '--no-build-isolation',
               '-v', '-w', str(out)], cwd=str(tmp_path), env=env)
    assert 'setuptools' in log
    (wheel, ) = glob.glob(str(out / 'partialnet_mm-*.whl'))
    with zipfile.ZipFile(wheel) as archive:
        assert 'partialnet_mm/.mim/tools/train.py' in archive.namelist()
    version = run([sys.executable, '-c', 'import setuptools; print(setuptools.__version__)'],
                  cwd=str(tmp_path), env=env)
    assert version.strip().splitlines()[-1] == '60.2.0'  # the build ran with it
