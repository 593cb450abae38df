from .dpconv import DPConv, DPConvMixing
from .irpe import EuclideanRelativePositionBias
from .partial_conv import (PartialChannelAttention, PartialConv, PartialSelfAttention,
                           PATChannel, PATSelfAttention, PATSpatial, partial_channels)

__all__ = [
    'EuclideanRelativePositionBias', 'PartialConv', 'PartialChannelAttention',
    'PartialSelfAttention', 'PATChannel', 'PATSelfAttention', 'PATSpatial',
    'partial_channels', 'DPConv', 'DPConvMixing'
]
