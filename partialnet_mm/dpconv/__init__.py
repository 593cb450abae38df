"""DPConv: learned splits for PartialNet's partial convolutions (mixer ``'DPConv'``).

* :mod:`.layer`: the gated convolution and the mixer, registered in ``MIXERS``;
* :mod:`.losses`: the complexity and order losses and how they reach a model's loss dict;
* :mod:`.hook`: ``DPConvHook``, which trains them with an mmengine Runner;
* :mod:`.export`: a trained DPConv model -> a plain PartialNet with the learned widths.

Switch it on per stage::

    model = dict(backbone=dict(mixer_cfgs=[dict(type='DPConv', mixer='PATChannel')] * 3
                                          + [None]))
    custom_hooks = [dict(type='DPConvHook', budget=2, warmup_epochs=1)]
"""
from .export import export_checkpoint, export_dpconv, plain_mixer_cfg
from .hook import DPConvHook
from .layer import DPConv, DPConvMixer
from .losses import (LOSS_COMPLEXITY, LOSS_ORDER, attach_dpconv_losses, dpconv_budget_usage,
                     dpconv_layers, dpconv_losses, set_dpconv_epoch)

__all__ = [
    'export_checkpoint', 'export_dpconv', 'plain_mixer_cfg', 'DPConvHook', 'DPConv',
    'DPConvMixer', 'LOSS_COMPLEXITY', 'LOSS_ORDER', 'attach_dpconv_losses',
    'dpconv_budget_usage', 'dpconv_layers', 'dpconv_losses', 'set_dpconv_epoch'
]
