from .deploy import DeployMixin, switch_to_deploy
from .exporting import is_exporting
from .fuse import (fuse_conv_norm, fuse_layernorm_linear, fuse_norm_pointwise_conv,
                   norm_affine, stack_pointwise_convs)
from .mixer_contract import SpatialMixer
from .naive import set_naive_forward

__all__ = [
    'DeployMixin', 'switch_to_deploy', 'is_exporting', 'fuse_conv_norm',
    'fuse_layernorm_linear', 'fuse_norm_pointwise_conv', 'norm_affine',
    'stack_pointwise_convs', 'SpatialMixer', 'set_naive_forward'
]
