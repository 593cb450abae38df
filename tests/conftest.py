import atexit
import glob
import importlib.util
import json
import os
import os.path as osp
import pickle
import shutil
import tempfile

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm.apis import test as run_test
from partialnet_mm.apis import train
from partialnet_mm.models.layers import EuclideanRelativePositionBias
from partialnet_mm.runner import data_root_options  # noqa: F401  (used by the tests)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
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
