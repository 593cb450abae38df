import atexit
import copy
import fcntl
import functools
import gc
import glob
import hashlib
import importlib.util
import json
import os
import os.path as osp
import pickle
import shutil
import tempfile
import traceback

import mmengine.config.config as mmengine_config
import mmengine.config.utils as mmengine_config_utils
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm.apis import test as run_test
from partialnet_mm.apis import train
from partialnet_mm.models.layers import EuclideanRelativePositionBias
from partialnet_mm.runner import data_root_options  # noqa: F401  (used by the tests)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# ------------------------------------------------------------------ parallel runs (pytest-xdist)
# pytest.ini runs the suite with ``-n auto --dist loadgroup``: one worker process per usable
# CPU, each with one CPU's share of threads (small models on a few cores run faster as
# parallel single-threaded processes than as one process whose threads contend); the tool
# subprocesses a test starts inherit the share through OMP_NUM_THREADS. Tests that share an
# expensive fixture carry one ``xdist_group`` mark, so that one worker runs them all and
# builds the fixture once. ``-n 0`` runs everything in this process.
def usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


# what a worker may hold: its own process and a tool it runs (a detector training in a
# subprocess takes up to ~3.5 GB)
MEMORY_PER_WORKER = 4 << 30


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per usable CPU (affinity, not the host's count), as many as
    the memory holds, unless PYTEST_XDIST_AUTO_NUM_WORKERS says otherwise."""
    if os.environ.get('PYTEST_XDIST_AUTO_NUM_WORKERS'):
        return None  # xdist's own hook reads it
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return max(1, min(usable_cpus(), memory // MEMORY_PER_WORKER))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist, the slow tests first (the order stays the same otherwise): the workers
    take the long runs while there is still short work left to even out their ends."""
    if os.environ.get('PYTEST_XDIST_WORKER'):
        items.sort(key=lambda item: item.get_closest_marker('slow') is None)


if os.environ.get('PYTEST_XDIST_WORKER'):
    THREADS_PER_WORKER = max(1, usable_cpus() // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))
    torch.set_num_threads(THREADS_PER_WORKER)
    os.environ.setdefault('OMP_NUM_THREADS', str(THREADS_PER_WORKER))


# ------------------------------------------------------------------ the stack's repeated work
# Work the stack redoes on unchanged inputs many times in one test process, done once per
# process here (the tools' subprocesses run the stack as it is):
# * yapf formatting a config's text: a Runner formats its config up to five times a run (log,
#   dump, visualizer, checkpoint meta), about a second each;
# * an installed library's model index: mmengine reads mmdet's ~100 metafiles for every
#   ``mmdet::`` base a config names.
# Both are functions of their arguments (and of installed files), so the results are the ones
# the stack computes. And the garbage collector's full passes, which mmengine forces for every
# dataset it builds, skip the objects that exist once the tests are collected (imported
# libraries, mostly): gc.freeze() in pytest_collection_finish.
def _format_once(format_code):
    formatted = {}

    def format_once(text, style_config=None, **kwargs):
        key = (text, json.dumps(style_config, sort_keys=True), json.dumps(kwargs, sort_keys=True))
        if key not in formatted:
            formatted[key] = format_code(text, style_config=style_config, **kwargs)
        return formatted[key]

    return format_once


def _read_once(read_metainfo):
    cached = functools.lru_cache(maxsize=None)(read_metainfo)

    def read_once(package_path, cfg_path):
        return copy.deepcopy(cached(package_path, cfg_path))

    return read_once


mmengine_config.FormatCode = _format_once(mmengine_config.FormatCode)
mmengine_config_utils._get_cfg_metainfo = _read_once(mmengine_config_utils._get_cfg_metainfo)


def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()


# ------------------------------------------------------------------ made once per session
class SessionStore:
    """Folders made once per test session and shared by every test, fixture module and
    xdist worker that asks for the same thing: demo data sets, trained demo checkpoints.

    ``folder(what, key, make)`` returns ``<session root>/<what>-<hash of key>`` after
    ``make(folder)`` filled it, which happens once: the first caller makes it under a file
    lock while the others wait for it. A ``make`` that fails is not retried by the next
    caller (it would fail the same way, minutes later): that caller fails with the first
    error. The root is the session's pytest basetemp, shared by the workers of one run and
    new for every run: nothing is reused across runs.
    """

    def __init__(self, root):
        self.root = str(root)

    def folder(self, what, key, make):
        digest = hashlib.sha256(json.dumps([what, key], sort_keys=True).encode()).hexdigest()
        folder = osp.join(self.root, f'{what}-{digest[:16]}')
        done, failed = osp.join(folder, '.made'), folder + '.failed'
        with open(folder + '.lock', 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if osp.exists(failed):
                with open(failed) as f:
                    pytest.fail(f'{what} failed earlier in this session:\n{f.read()}')
            if not osp.exists(done):
                shutil.rmtree(folder, ignore_errors=True)
                os.makedirs(folder)
                try:
                    make(folder)
                except Exception:
                    with open(failed, 'w') as f:
                        f.write(traceback.format_exc()[-6000:])
                    raise
                open(done, 'w').close()
        return folder

    def trained(self, config, options, threads=None):
        """The last checkpoint of ``train(config, cfg_options=options)``, trained once per
        session for the config's content and the options (a dict of options must be
        JSON-serialisable). ``threads``: train with that many torch threads, whatever the
        worker has: the weights a run ends with depend on it (the order of float sums)."""
        with open(config, 'rb') as f:
            content = hashlib.sha256(f.read()).hexdigest()

        def make(folder):
            before = torch.get_num_threads()
            torch.set_num_threads(threads or before)
            try:
                train(config, folder, cfg_options=options)
            finally:
                torch.set_num_threads(before)

        work_dir = self.folder(f'trained-{osp.splitext(osp.basename(config))[0]}',
                               [config, content, options, threads], make)
        checkpoints = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
        assert checkpoints, f'no checkpoint written to {work_dir}'
        return checkpoints[-1]


@pytest.fixture(scope='session')
def session_store(tmp_path_factory):
    """The :class:`SessionStore` of this run (the controller's basetemp under xdist, whose
    workers each have a folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return SessionStore(base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base)
# The runs of this session record the datasets they checked in a cache folder of their own
# (tool subprocesses inherit it), not in the user's ~/.cache/partialnet-mm.
os.environ['PARTIALNET_CACHE'] = tempfile.mkdtemp(prefix='partialnet-test-cache-')
atexit.register(shutil.rmtree, os.environ['PARTIALNET_CACHE'], True)


def load_tool(name):
    """``tools/<name>.py`` as a module (its ``parse_args`` / ``main``), to run a tool of ours
    inside the test process: what the command line does, minus starting an interpreter."""
    spec = importlib.util.spec_from_file_location(f'partialnet_tool_{name}',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_dir():
    """``$PARTIALNET_REFERENCE_DIR``, else ``../shared/reference`` beside the checkout."""
    env = os.environ.get('PARTIALNET_REFERENCE_DIR')
    return env if env else osp.join(osp.dirname(ROOT), 'shared', 'reference')


def reference_file(name):
    """Path of a reference file, or skip the test saying where it was looked for."""
    path = osp.join(reference_dir(), name)
    if not osp.exists(path):
        pytest.skip(f'reference data {name} not found in {reference_dir()} '
                    f'(set PARTIALNET_REFERENCE_DIR to the folder holding it)')
    return path


def logged_val_metrics(work_dir, key):
    """The last validation record containing ``key`` in a run's scalars.json."""
    logs = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    assert logs, f'no scalars.json under {work_dir}'
    with open(logs[0]) as f:
        records = [json.loads(line) for line in f]
    found = [r for r in records if key in r]
    assert found, f'no {key} logged in {logs[0]}'
    return found[-1]


def train_and_retest(config, work_dir, options, metric_keys, tmp_path):
    """Train ``config`` (few iterations), then reload its checkpoint and test it.

    Asserts the metric keys were logged by validation and that testing the saved checkpoint
    reproduces them. Returns (test metrics, predictions dumped by ``test(out=...)``).
    """
    train(config, str(work_dir), cfg_options=options)
    checkpoints = glob.glob(osp.join(str(work_dir), '*.pth'))
    assert checkpoints, f'no checkpoint written to {work_dir}'
    logged = logged_val_metrics(work_dir, metric_keys[0])
    dump = osp.join(str(tmp_path), 'predictions.pkl')
    metrics = run_test(config, sorted(checkpoints)[-1], osp.join(str(tmp_path), 'test'),
                       out=dump, cfg_options=options)
    for key in metric_keys:
        assert key in logged and key in metrics, key
        assert metrics[key] == pytest.approx(logged[key], abs=1e-6), key
    with open(dump, 'rb') as f:
        return metrics, pickle.load(f)


def fewer_rois(model_cfg, rois: int = 64):
    """A two-stage detector config that samples and keeps ``rois`` RoIs per image (its
    RoI heads' work, not what the test checks: the configs' own numbers cost seconds of
    fully connected layers per step on the CPU). One-stage configs are left as they are."""
    train_cfg, test_cfg = model_cfg.get('train_cfg') or {}, model_cfg.get('test_cfg') or {}
    for proposals in (train_cfg.get('rpn_proposal'), test_cfg.get('rpn')):
        if proposals:
            proposals.update(nms_pre=2 * rois, max_per_img=rois)
    stages = train_cfg.get('rcnn') or []
    for stage in stages if isinstance(stages, list) else [stages]:
        stage.sampler.num = rois
    return model_cfg


def randomize_inference_state(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial values for everything fusion folds: BN statistics and affines, LayerNorm
    affines, iRPE tables (convolutions keep PyTorch's default init, which is not tiny)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g) * 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
            elif isinstance(m, EuclideanRelativePositionBias):
                m.bias_table.copy_(torch.randn(m.bias_table.shape, generator=g))
    return model


def assert_outputs_close(got, expected, rtol, what):
    assert len(got) == len(expected), what
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, f'{what}[{i}]: {a.shape} vs {b.shape}'
        err = (a - b).abs().max().item()
        scale = b.abs().max().item()
        assert err <= rtol * scale, f'{what}[{i}]: max|diff| {err:.3g} > {rtol} * {scale:.3g}'


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for a module of small models (faster than two threads fighting over
    a CPU shared with other jobs), restored afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures('one_torch_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
