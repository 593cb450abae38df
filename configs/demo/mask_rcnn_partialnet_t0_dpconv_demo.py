# The Mask R-CNN demo with DPConv. After training, `python tools/export_dpconv.py` turns the
# checkpoint into a plain PartialNet with the learned splits (docs/dpconv.md).
_base_ = ['./mask_rcnn_partialnet_t0_demo.py']

# every block of stages 0-2 (PAT_ch) learns its split, starting from n_div = 4; the last
# stage (PAT_sf) keeps its fixed split
model = dict(
    backbone=dict(mixer_cfgs=[
        dict(type='DPConv', mixer='PATChannel'),
        dict(type='DPConv', mixer='PATChannel'),
        dict(type='DPConv', mixer='PATChannel'),
        None,
    ]))
# the gates are signs: no weight decay (it would pull them all to the sign boundary); a larger
# step so that a short schedule can flip them
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.gates': dict(decay_mult=0., lr_mult=10.)}))
# the splits' budget: an average n_div = 4 (b = 2); the demo's hooks stay (lists are
# replaced, not merged)
custom_hooks = [
    *_base_.custom_hooks,
    dict(type='DPConvHook', budget=2, warmup_epochs=1, complexity_weight=1.0,
         order_weight=1.0),
]
