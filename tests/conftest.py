import os
import os.path as osp

import pytest

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
