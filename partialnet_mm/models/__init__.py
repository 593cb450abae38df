from .backbones import PartialNet, partialnet_channels
from .heads import PartialNetClsHead

__all__ = ['PartialNet', 'PartialNetClsHead', 'partialnet_channels']
