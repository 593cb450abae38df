from .partialnet import PartialNet, partialnet_channels

__all__ = ['PartialNet', 'partialnet_channels']
