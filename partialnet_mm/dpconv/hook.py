"""Training models with DPConv mixers with an mmengine Runner."""
from typing import List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from .layer import DPConvMixer
from .losses import (attach_dpconv_losses, check_loss_cfg, dpconv_budget_usage,
                     dpconv_layers, set_dpconv_epoch)


def train_epoch(runner) -> int:
    """The 0-based training epoch, also for iteration-based loops (iterations divided by the
    length of the training data loader)."""
    loop = runner.train_loop
    if isinstance(loop, EpochBasedTrainLoop):
        return runner.epoch
    return runner.iter // max(len(loop.dataloader), 1)


@HOOKS.register_module()
class DPConvHook(Hook):
    """Everything a Runner needs to train a model whose backbone has DPConv mixers.

    * at the start, adds the DPConv losses (``loss_dpconv_complexity``,
      ``loss_dpconv_order``) to the model's loss dict with
      :func:`~partialnet_mm.dpconv.attach_dpconv_losses` — the same mechanism for mmdet,
      mmseg and mmpretrain models;
    * before every training iteration, freezes the gates during the first
      ``warmup_epochs`` (epochs of iteration-based loops count data-loader passes) and frees
      them afterwards;
    * after every training iteration, puts each layer's convolved width into the message
      hub (``dpconv/s{stage}.b{block}``, in the training log line and ``scalars.json``) with
      the mask size relative to the budget (``dpconv/budget_usage``, <= 1 within budget); at
      the end of every epoch, logs one line with every layer's split.

    Args:
        budget (float): ``b``: the total mask size ``sum(D * c)`` may reach
            ``sum(D**2) / b**2`` (``b = 2``: an average split of ``D / 4``). Defaults to 2.
        warmup_epochs (int): Epochs with frozen gates (and zero losses). Defaults to 0.
        complexity_weight (float): Weight of the budget loss. Defaults to 1.
        order_weight (float): Weight of the gate-order loss. Defaults to 1.
    """

    priority = 'NORMAL'

    def __init__(self, budget: float = 2., warmup_epochs: int = 0,
                 complexity_weight: float = 1., order_weight: float = 1.):
        check_loss_cfg(budget, complexity_weight, order_weight)
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(f'DPConvHook: warmup_epochs must be a non-negative integer, got '
                             f'{warmup_epochs}')
        self.budget = float(budget)
        self.warmup_epochs = int(warmup_epochs)
        self.loss_cfg = dict(budget=self.budget, complexity_weight=complexity_weight,
                             order_weight=order_weight)
        self._model = None
        self._layers: List[Tuple[str, DPConvMixer]] = []
        self._frozen: Optional[bool] = None

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            self._layers = attach_dpconv_losses(model, **self.loss_cfg)
        except ValueError as err:
            raise ValueError(f'DPConvHook: {err}, or remove the hook from custom_hooks') \
                from None
        self._model = model

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        epoch = train_epoch(runner)
        frozen = set_dpconv_epoch(self._model, epoch, self.warmup_epochs)
        if frozen != self._frozen:
            self._frozen = frozen
            runner.logger.info(
                f'DPConv: gates frozen (warm-up) until epoch {self.warmup_epochs}' if frozen
                else f'DPConv: learning the splits from epoch {epoch + 1}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        hub = runner.message_hub
        for name, layer in self._layers:
            hub.update_scalar(f'train/dpconv/{name}', layer.conv_channels)
        hub.update_scalar('train/dpconv/budget_usage',
                          dpconv_budget_usage(self._model, self.budget))

    def after_train_epoch(self, runner) -> None:
        runner.logger.info(f'DPConv splits: {summarize_splits(self._model, self.budget)}')


def summarize_splits(model, budget: float = 2.) -> str:
    """``'s0.b0 8/32, s1.b0 16/64, ...; mask size 0.98 x budget'``."""
    layers = ', '.join(f'{name} {layer.conv_channels}/{layer.channels}'
                       for name, layer in dpconv_layers(model))
    return f'{layers}; mask size {dpconv_budget_usage(model, budget):.3f} x budget'
