_base_ = ['./_base_/fpn_partialnet_ade20k.py']
from partialnet_mm.config_helpers import fpn_detector  # noqa: E402  (after _base_: a plain config)

arch = 'm'
model = fpn_detector(arch)  # Semantic FPN: the same backbone/neck wiring as the detectors
