# The classification demo with DPConv: every block of stages 0-2 (PAT_ch) learns its split,
# starting from n_div = 4, under the budget of an average n_div = 4 (b = 2); the last stage
# (PAT_sf) keeps its fixed split. After training, `python tools/export_dpconv.py` turns the
# checkpoint into a plain PartialNet with the learned splits.
_base_ = ['./partialnet_t0_imagenet_demo.py']

model = dict(
    backbone=dict(
        dpconv=dict(stages=(0, 1, 2), budget=2, warmup_epochs=1, complexity_weight=1.0,
                    order_weight=1.0)))
# the gates are signs: no weight decay (it would pull them all to the sign boundary); a larger
# step so that a short schedule can flip them
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.gates': dict(decay_mult=0., lr_mult=10.)}))
custom_hooks = _base_.custom_hooks + [dict(type='DPConvHook')]
