_base_ = ['./_base_/upernet_partialnet_ade20k.py']
from partialnet_mm.config_helpers import upernet_segmentor  # noqa: E402  (after _base_)

arch = 't1'
model = upernet_segmentor(arch)
