"""Losses that a submodule (a backbone) contributes to its model's loss dict.

mmdet detectors, mmseg segmentors and mmpretrain classifiers each build their loss dict in
their own ``loss()``, from their heads; a backbone has no say in it, and an mmengine hook
only sees the parsed losses after the backward pass. What all three share is the call
``model(inputs, data_samples, mode='loss')`` returning that dict, made by
``BaseModel.train_step`` (and by DDP wrappers through the inner model's ``__call__``).

:func:`attach_aux_losses` puts one forward hook on the top-level model. After a
``mode='loss'`` forward it asks every submodule that defines ``aux_losses()`` for its losses
and adds them to the returned dict under their own names (a name clash is an error, never an
overwrite). The runner then sums, logs and optimises them like any head loss. No class is
patched or subclassed, the model's state dict is unchanged, and the same hook serves every
library. ``DPConvHook`` attaches it at the start of a run.
"""
from typing import List

import torch.nn as nn
from mmengine.model import is_model_wrapper


def aux_loss_providers(model: nn.Module) -> List[nn.Module]:
    """Submodules of ``model`` that define ``aux_losses()``."""
    return [m for m in model.modules()
            if m is not model and callable(getattr(m, 'aux_losses', None))]


def _merge_aux_losses(model: nn.Module, args, kwargs, output):
    mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
    if mode != 'loss' or not isinstance(output, dict):
        return None
    for provider in aux_loss_providers(model):
        for name, value in provider.aux_losses().items():
            if name in output:
                raise KeyError(f'{type(provider).__name__}.aux_losses() returns {name!r}, '
                               f'which the {type(model).__name__} loss dict already has')
            output[name] = value
    return output


def attach_aux_losses(model: nn.Module) -> List[nn.Module]:
    """Make ``model(..., mode='loss')`` return its submodules' ``aux_losses()`` too.

    Idempotent; a model wrapper (DDP) is unwrapped. Marks each provider with
    ``aux_losses_attached = True`` (a DPConv backbone warns when training without it).

    Returns:
        list[nn.Module]: The providers found.
    """
    if is_model_wrapper(model):
        model = model.module
    if _merge_aux_losses not in model._forward_hooks.values():
        model.register_forward_hook(_merge_aux_losses, with_kwargs=True)
    providers = aux_loss_providers(model)
    for provider in providers:
        provider.aux_losses_attached = True
    return providers
