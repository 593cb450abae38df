# DPConv settings shared by the demo configs that switch it on: every block of stages 0-2
# (PAT_ch) learns its split, starting from n_div = 4, under the budget of an average n_div = 4
# (b = 2); the last stage (PAT_sf) keeps its fixed split.
dpconv_mixers = [dict(type='DPConv', mixer='PATChannel')] * 3 + [None]
dpconv_hook = dict(type='DPConvHook', budget=2, warmup_epochs=1, complexity_weight=1.0,
                   order_weight=1.0)
# the gates are signs: no weight decay (it would pull them all to the sign boundary); a larger
# step so that a short schedule can flip them
dpconv_paramwise_cfg = dict(custom_keys={'.gates': dict(decay_mult=0., lr_mult=10.)})
