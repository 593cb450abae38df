"""DPConv's training losses: the complexity budget and the gate order.

* complexity: with the mask size of a layer ``D * c`` (``D**2 / groups``) and the budget
  ``sum(D**2) / b**2`` over all DPConv layers of the model (``b = budget``, 2 by default),
  ``complexity_weight * relu(sum(D * c) / budget_size - 1)``: zero under budget, positive
  above. ``b = 2`` allows an average convolved part of ``D / 4``, the fixed ``n_div = 4``.
* order: for every pair ``k < k'`` with ``s_k = 1`` and ``s_k' = 0`` (which makes the groups
  non-contiguous), ``order_weight * (g_k - g_k')``; zero in legal order. It acts on ``g``
  directly, so it also moves gates outside the straight-through window.

:func:`attach_dpconv_losses` adds them to a model's loss dict
(:func:`partialnet_mm.engine.attach_aux_losses`); ``DPConvHook`` does it for a Runner.
"""
import re
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import is_model_wrapper

from ..engine.aux_losses import attach_aux_losses
from .layer import DPConvMixer, order_penalty

LOSS_COMPLEXITY = 'loss_dpconv_complexity'
LOSS_ORDER = 'loss_dpconv_order'
LOSS_DEFAULTS = dict(budget=2., complexity_weight=1., order_weight=1.)


def dpconv_layers(model: nn.Module) -> List[Tuple[str, DPConvMixer]]:
    """``[('s{i}.b{j}', mixer), ...]`` for every DPConv mixer in ``model`` (a backbone, or a
    whole model with one backbone); other names are kept as they are."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, DPConvMixer):
            m = re.search(r'stages\.(\d+)\.blocks\.(\d+)\.spatial_mixing$', name)
            layers.append((f's{m.group(1)}.b{m.group(2)}' if m else name, module))
    return layers


def check_loss_cfg(budget: float, complexity_weight: float, order_weight: float) -> None:
    if not budget >= 1:
        raise ValueError(f'DPConv: budget (b, the budget is sum(D^2) / b^2) must be >= 1, '
                         f'got {budget}')
    for key, value in (('complexity_weight', complexity_weight),
                       ('order_weight', order_weight)):
        if not value >= 0:
            raise ValueError(f'DPConv: {key} must be >= 0, got {value}')


def set_dpconv_epoch(model: nn.Module, epoch: int, warmup_epochs: int) -> bool:
    """Freeze the gates during the first ``warmup_epochs``, free them afterwards.

    Returns whether they are frozen at ``epoch`` (0-based).
    """
    frozen = epoch < warmup_epochs
    for _, layer in dpconv_layers(model):
        layer.conv.frozen = frozen
    return frozen


def dpconv_losses(model: nn.Module, budget: float = 2., complexity_weight: float = 1.,
                  order_weight: float = 1.) -> Dict[str, torch.Tensor]:
    """The complexity and order losses of the DPConv layers in ``model``.

    Both are zero (still connected to every gate, so that distributed training sees every
    parameter used) while the gates are frozen or do not require gradients.
    """
    convs = [layer.conv for _, layer in dpconv_layers(model)]
    zero = sum(conv.gates.sum() for conv in convs) * 0.
    learning = [conv for conv in convs if not conv.frozen and conv.gates.requires_grad]
    if not learning:
        return {LOSS_COMPLEXITY: zero, LOSS_ORDER: zero}
    size = sum(conv.mask_size(straight_through=conv in learning) for conv in convs)
    budget_size = sum(conv.channels**2 for conv in convs) / budget**2
    complexity = complexity_weight * F.relu(size / budget_size - 1)
    order = order_weight * sum(order_penalty(conv.gates, conv.states()) for conv in learning)
    return {LOSS_COMPLEXITY: complexity + zero, LOSS_ORDER: order + zero}


def dpconv_budget_usage(model: nn.Module, budget: float = 2.) -> float:
    """Total mask size over the budget (<= 1: within budget)."""
    convs = [layer.conv for _, layer in dpconv_layers(model)]
    size = sum(conv.channels * conv.conv_channels for conv in convs)
    return size / (sum(conv.channels**2 for conv in convs) / budget**2)


class DPConvLoss:
    """:func:`dpconv_losses` of one model with fixed settings, as a loss provider (an object
    rather than a closure, so that a deep copy of the model computes its own losses)."""

    def __init__(self, model: nn.Module, budget: float, complexity_weight: float,
                 order_weight: float):
        self.model = model
        self.settings = dict(budget=budget, complexity_weight=complexity_weight,
                             order_weight=order_weight)

    def __call__(self) -> Dict[str, torch.Tensor]:
        return dpconv_losses(self.model, **self.settings)


def attach_dpconv_losses(model: nn.Module, budget: float = 2., complexity_weight: float = 1.,
                         order_weight: float = 1.) -> List[Tuple[str, DPConvMixer]]:
    """Add the DPConv losses of ``model`` to its loss dict (idempotent); returns its layers.

    After this, ``model.loss(...)``, ``model(..., mode='loss')`` and ``train_step`` return
    ``loss_dpconv_complexity`` and ``loss_dpconv_order`` beside the task losses.
    """
    check_loss_cfg(budget, complexity_weight, order_weight)
    inner = model.module if is_model_wrapper(model) else model
    layers = dpconv_layers(inner)
    if not layers:
        raise ValueError(f'{type(inner).__name__} has no DPConv mixer; set '
                         f"model.backbone.mixer_cfgs=[dict(type='DPConv', ...), ...]")
    attach_aux_losses(inner, 'dpconv',
                      DPConvLoss(inner, budget, complexity_weight, order_weight))
    for _, layer in layers:
        layer.losses_attached = True
    return layers
