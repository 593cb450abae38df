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
    """Run ``tools/<name>`` in this process as ``python tools/<name> argv...`` would."""
    import runpy
    import sys
    saved = sys.argv
    sys.argv = [osp.join(ROOT, 'tools', name), *map(str, argv)]
    try:
        return runpy.run_path(sys.argv[0], run_name='__main__')
    finally:
        sys.argv = saved
