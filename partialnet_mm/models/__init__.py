from .archs import ARCH_SETTINGS, parse_arch, partialnet_channels
from .backbones import PartialNet
from .heads import PartialNetClsHead
from .layers import MIXERS
from .utils import SpatialMixer, set_naive_forward, switch_to_deploy

__all__ = [
    'ARCH_SETTINGS', 'parse_arch', 'partialnet_channels', 'PartialNet',
    'PartialNetClsHead', 'MIXERS', 'SpatialMixer', 'set_naive_forward', 'switch_to_deploy'
]
