"""What the project's ``tools/train.py`` and ``tools/test.py`` add around mmengine's Runner."""
from .config import config_scope, installed_config_path, load_config, parse_cfg_options, scope_of
from .datasets import (DEMO_HINT, DataError, check_datasets, data_root_options,
                       explain_data_errors)
from .launch import amp_for_device, setup_cpu_distributed
from .resume import find_resume_checkpoint, is_complete_checkpoint
from .tta import TTAConfigError, enable_tta
from .visualization import enable_visualization, own_visualizer

__all__ = [
    'config_scope', 'installed_config_path', 'load_config', 'parse_cfg_options', 'scope_of',
    'DEMO_HINT', 'DataError', 'check_datasets', 'data_root_options', 'explain_data_errors',
    'amp_for_device', 'setup_cpu_distributed', 'find_resume_checkpoint',
    'is_complete_checkpoint', 'TTAConfigError', 'enable_tta', 'enable_visualization',
    'own_visualizer'
]
