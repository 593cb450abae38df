from .export import is_exporting
from .fuse import (fuse_conv_norm, fuse_layernorm_linear, fuse_norm_pointwise_conv,
                   norm_affine, stack_pointwise_convs)

__all__ = [
    'is_exporting', 'fuse_conv_norm', 'fuse_layernorm_linear', 'fuse_norm_pointwise_conv',
    'norm_affine', 'stack_pointwise_convs'
]
