"""Training DPConv backbones with an mmengine Runner."""
from typing import List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .aux_losses import attach_aux_losses


def train_epoch(runner) -> int:
    """The 0-based training epoch, also for iteration-based loops (iterations divided by the
    length of the training data loader)."""
    from mmengine.runner import EpochBasedTrainLoop
    loop = runner.train_loop
    if isinstance(loop, EpochBasedTrainLoop):
        return runner.epoch
    return runner.iter // max(len(loop.dataloader), 1)


@HOOKS.register_module()
class DPConvHook(Hook):
    """Everything a Runner needs to train a PartialNet with ``dpconv`` on.

    * at the start, attaches the backbone's losses (``loss_dpconv_complexity``,
      ``loss_dpconv_order``) to the model's loss dict with
      :func:`~partialnet_mm.engine.aux_losses.attach_aux_losses` — the same mechanism for
      mmdet, mmseg and mmpretrain models;
    * before every training iteration, freezes the gates during the backbone's
      ``dpconv.warmup_epochs`` (epochs of iteration-based loops count data-loader passes)
      and frees them afterwards;
    * after every training iteration, puts each layer's convolved width into the message
      hub (``dpconv/s{stage}.b{block}``, in the training log line and ``scalars.json``) with
      the mask size relative to the budget (``dpconv/budget_usage``, <= 1 within budget); at
      the end of every epoch, logs one line with every layer's split.
    """

    priority = 'NORMAL'

    def __init__(self):
        self._backbones: List[Tuple[str, object]] = []
        self._frozen: Optional[bool] = None

    def before_run(self, runner) -> None:
        from ..models.backbones.partialnet import PartialNet
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._backbones = [(name, m) for name, m in model.named_modules()
                           if isinstance(m, PartialNet) and m.dpconv is not None]
        if not self._backbones:
            raise ValueError(
                'DPConvHook: the model has no PartialNet backbone with DPConv on; set '
                'model.backbone.dpconv=dict(...) or remove the hook from custom_hooks.')
        attach_aux_losses(model)

    def _tag(self, name: str) -> str:
        return '' if len(self._backbones) == 1 else f'{name}.'

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        from ..models.layers.dpconv import set_dpconv_epoch
        epoch = train_epoch(runner)
        frozen = [set_dpconv_epoch(backbone, epoch) for _, backbone in self._backbones]
        if any(frozen) != self._frozen:
            self._frozen = any(frozen)
            warmup = max(b.dpconv['warmup_epochs'] for _, b in self._backbones)
            runner.logger.info(
                f'DPConv: gates frozen (warm-up) until epoch {warmup}' if self._frozen else
                f'DPConv: learning the splits from epoch {epoch + 1}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        from ..models.layers.dpconv import dpconv_budget_usage, dpconv_layers
        hub = runner.message_hub
        for name, backbone in self._backbones:
            tag = self._tag(name)
            for layer_name, layer in dpconv_layers(backbone):
                hub.update_scalar(f'train/dpconv/{tag}{layer_name}', layer.conv_channels)
            hub.update_scalar(f'train/dpconv/{tag}budget_usage', dpconv_budget_usage(backbone))

    def after_train_epoch(self, runner) -> None:
        for name, backbone in self._backbones:
            runner.logger.info(f'DPConv {self._tag(name)}splits: {summarize_splits(backbone)}')


def summarize_splits(backbone) -> str:
    """``'s0.b0 8/32, s1.b0 16/64, ...; mask size 0.98 x budget'``."""
    from ..models.layers.dpconv import dpconv_budget_usage, dpconv_layers
    layers = ', '.join(f'{name} {layer.conv_channels}/{layer.channels}'
                       for name, layer in dpconv_layers(backbone))
    return f'{layers}; mask size {dpconv_budget_usage(backbone):.3f} x budget'
