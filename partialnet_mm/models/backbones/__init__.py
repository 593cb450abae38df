from .partialnet import PartialNet, convert_state_dict

__all__ = ['PartialNet', 'convert_state_dict']
