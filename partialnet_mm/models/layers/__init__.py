from .attention import PartialChannelAttention, PartialSelfAttention
from .block import PartialNetBlock, PartialNetStage
from .conv_norm import ConvNorm
from .irpe import EuclideanRelativePositionBias
from .mixers import MIXERS, PartialConv, PATChannel, PATSelfAttention, build_mixer
from .mlp import PartialNetMLP, PATSpatial

__all__ = [
    'PartialChannelAttention', 'PartialSelfAttention', 'PartialNetBlock', 'PartialNetStage',
    'ConvNorm', 'EuclideanRelativePositionBias', 'MIXERS', 'PartialConv', 'PATChannel',
    'PATSelfAttention', 'build_mixer', 'PartialNetMLP', 'PATSpatial'
]
