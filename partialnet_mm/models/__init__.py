from ..libraries import LIBRARY_TYPES
from . import heads
from .archs import ARCH_SETTINGS, parse_arch, partialnet_channels
from .backbones import PartialNet
from .layers import MIXERS
from .utils import SpatialMixer, set_naive_forward, switch_to_deploy

__all__ = [
    'ARCH_SETTINGS', 'parse_arch', 'partialnet_channels', 'PartialNet', *heads.__all__,
    'MIXERS', 'SpatialMixer', 'set_naive_forward', 'switch_to_deploy'
]


def __getattr__(name: str):
    # the heads that need a library (PartialNetClsHead: mmpretrain) are there where it is
    # installed; elsewhere this raises the error that names the extra to install
    if name in LIBRARY_TYPES:
        return getattr(heads, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
