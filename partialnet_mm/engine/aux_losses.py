"""Losses that a model's parts contribute to its loss dict, in every OpenMMLab library.

mmdet detectors, mmseg segmentors and mmpretrain classifiers each build their loss dict in
their own ``loss()``, from their heads; a backbone has no say in it, and an mmengine hook only
sees the parsed losses after the backward pass. :func:`attach_aux_losses` wraps the
``loss`` method of one model *instance* so that its result also holds the losses of the
given providers. ``model.loss(...)`` called directly, ``model(..., mode='loss')`` and the
Runner's ``train_step`` (which goes through ``forward``) all return them; the runner sums,
logs and optimises them like any head loss. No class is patched and the state dict is
unchanged.
"""
import types
from typing import Callable, Dict

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper

LossProvider = Callable[[], Dict[str, torch.Tensor]]


def _loss_with_aux(self, *args, **kwargs):
    losses = type(self).loss(self, *args, **kwargs)
    for provider in self.aux_loss_providers.values():
        for name, value in provider().items():
            if name in losses:
                raise KeyError(f'an auxiliary loss is named {name!r}, which the '
                               f'{type(self).__name__} loss dict already has')
            losses[name] = value
    return losses


def attach_aux_losses(model: nn.Module, key: str, provider: LossProvider) -> nn.Module:
    """Make ``model.loss(...)`` also return ``provider()``'s losses; returns the model.

    Args:
        model (nn.Module): An mmdet / mmseg / mmpretrain model (a DDP wrapper is unwrapped)
            with a ``loss`` method returning a dict.
        key (str): Name of the provider; attaching under the same key again replaces it.
        provider (callable): Returns ``{loss_name: tensor}``; called after every ``loss``.
    """
    if is_model_wrapper(model):
        model = model.module
    if not callable(getattr(type(model), 'loss', None)):
        raise TypeError(f'{type(model).__name__} has no loss() method to add losses to')
    if 'aux_loss_providers' not in model.__dict__:
        model.aux_loss_providers = {}
        model.loss = types.MethodType(_loss_with_aux, model)
    model.aux_loss_providers[key] = provider
    return model
