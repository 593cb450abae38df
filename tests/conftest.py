import os
import os.path as osp

import pytest

from partialnet_mm.runtime import data_root_options  # noqa: F401  (used by the tests)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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


def run_tool(name, *argv):
    """``python tools/<name> argv...`` in this process; returns what its ``main`` returns."""
    import runpy
    module = runpy.run_path(osp.join(ROOT, 'tools', name))
    return module['main']([str(a) for a in argv])


def logged_val_metrics(work_dir, key):
    """The last validation record containing ``key`` in a run's scalars.json."""
    import glob
    import json
    logs = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    assert logs, f'no scalars.json under {work_dir}'
    records = [json.loads(line) for line in open(logs[0])]
    found = [r for r in records if key in r]
    assert found, f'no {key} logged in {logs[0]}'
    return found[-1]


def train_and_retest(config, work_dir, options, metric_keys, tmp_path):
    """Train ``config`` (few iterations), then reload its checkpoint with tools/test.py.

    Asserts the metric keys were logged by validation and that testing the saved checkpoint
    reproduces them. Returns (test metrics, predictions dumped by tools/test.py --out).
    """
    import glob
    import pickle
    run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options', *options)
    checkpoints = [p for p in glob.glob(osp.join(str(work_dir), '*.pth'))]
    assert checkpoints, f'no checkpoint written to {work_dir}'
    logged = logged_val_metrics(work_dir, metric_keys[0])
    dump = osp.join(str(tmp_path), 'predictions.pkl')
    metrics = run_tool('test.py', config, sorted(checkpoints)[-1], '--work-dir',
                       osp.join(str(tmp_path), 'test'), '--out', dump, '--cfg-options', *options)
    for key in metric_keys:
        assert key in logged and key in metrics, key
        assert metrics[key] == pytest.approx(logged[key], abs=1e-6), key
    with open(dump, 'rb') as f:
        return metrics, pickle.load(f)
