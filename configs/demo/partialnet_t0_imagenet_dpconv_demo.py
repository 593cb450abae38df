# The classification demo with DPConv (settings: ../_base_/dpconv_t0_demo.py). After training,
# `python tools/export_dpconv.py` turns the checkpoint into a plain PartialNet with the
# learned splits.
_base_ = ['./partialnet_t0_imagenet_demo.py', '../_base_/dpconv_t0_demo.py']

model = dict(backbone=dict(mixer_cfgs=_base_.dpconv_mixers))
optim_wrapper = dict(paramwise_cfg=_base_.dpconv_paramwise_cfg)
custom_hooks = _base_.custom_hooks + [_base_.dpconv_hook]
