"""Measuring the models users run: building them by arch or config, the ``--fuse`` switch,
FLOPs (``tools/get_flops.py``), timing side by side (the deploy check's latency) and the
machine a figure was measured on.

The benchmarks against the forms, the peers and the authors' code are the project's own
tooling (:mod:`partialnet_mm.tooling`); they use these functions, never the other way round.
"""
from .flops import count_flops
from .models import (build_arch_model, build_config_model, find_backbones, parse_shape,
                     switch_model_to_deploy)
from .report import cpu_name, machine_description
from .timing import time_interleaved

__all__ = [
    'count_flops', 'build_arch_model', 'build_config_model', 'find_backbones', 'parse_shape',
    'switch_model_to_deploy', 'cpu_name', 'machine_description', 'time_interleaved'
]
