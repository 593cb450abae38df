"""Run a training script in torchrun's process group on CPUs: how the start-up benchmark
(:mod:`partialnet_mm.tooling.startup`) launches mmdet's own ``tools/train.py`` in several
CPU processes.

    torchrun --standalone --nproc_per_node 2 gloo_launch.py SCRIPT ARGS...

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` before it joins the group,
which fails without GPUs; it joins no group that already exists. This file joins it with
gloo and then runs ``SCRIPT`` as ``__main__``, as ``python SCRIPT ARGS`` would. Run by path,
it imports nothing of this package, so the script's imports cost what they cost without it.
"""
import importlib.util
import os.path as osp
import sys
from typing import Sequence

import torch.distributed as dist


def run_in_gloo_group(argv: Sequence[str]) -> None:
    """Join torchrun's process group with gloo, then run the script ``argv[0]`` with the
    arguments ``argv[1:]`` as ``__main__``."""
    script = osp.abspath(argv[0])
    dist.init_process_group(backend='gloo')
    sys.argv = [script, *argv[1:]]
    sys.path[0] = osp.dirname(script)  # the script's folder, as `python SCRIPT` has it
    spec = importlib.util.spec_from_file_location('__main__', script)
    module = importlib.util.module_from_spec(spec)
    sys.modules['__main__'] = module
    spec.loader.exec_module(module)


if __name__ == '__main__':
    run_in_gloo_group(sys.argv[1:])
