from .partialnet_head import PartialNetClsHead

__all__ = ['PartialNetClsHead']
