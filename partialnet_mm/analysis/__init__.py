"""Measuring models: building them by arch or config, FLOPs, speed and memory."""
from .benchmark import benchmark_inference, benchmark_training, model_sources
from .flops import count_flops
from .models import (build_arch_model, build_config_model, find_backbones, parse_shape,
                     switch_model_to_deploy)
from .report import cpu_name, machine_description

__all__ = [
    'benchmark_inference', 'benchmark_training', 'model_sources', 'count_flops',
    'build_arch_model', 'build_config_model', 'find_backbones', 'parse_shape',
    'switch_model_to_deploy', 'cpu_name', 'machine_description'
]
