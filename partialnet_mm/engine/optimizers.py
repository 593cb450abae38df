"""Layer-wise learning-rate decay for detectors and segmentors with a PartialNet backbone.

Fine-tuning from ImageNet weights often works better when early layers move less than late
ones: the parameter at depth ``d`` of ``L`` layers trains at ``lr * rate ** (L - 1 - d)``.
mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` does this for classifiers (it asks
``ImageClassifier.get_layer_depth``, which asks :meth:`PartialNet.get_layer_depth`), but
mmdet's and mmseg's own decay constructors only know ConvNeXt and BEiT parameter names, and
detectors and segmentors have no ``get_layer_depth``. This constructor asks the backbone
directly, so it works for any model with a ``backbone`` that has ``get_layer_depth``.

Depths (from :meth:`PartialNet.get_layer_depth`): the stem is 0, block ``k`` (counted over
all stages from 1) is ``k``, merging layers and output norms share the depth of their
neighbouring block; everything outside the backbone (neck, heads) is the top layer and
keeps the full lr. Everything :class:`~mmengine.optim.DefaultOptimWrapperConstructor` does
with ``paramwise_cfg`` (``norm_decay_mult``, ``custom_keys`` with ``lr_mult`` /
``decay_mult``, ...) still applies; the depth factor multiplies the resulting lr.

Use it in any mmdet / mmseg config (it is registered in mmengine's root registry, which the
libraries' registries fall back to), e.g. on top of the project's detection recipe::

    optim_wrapper = dict(
        constructor='PartialNetLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.9))

or from the command line: ``--cfg-options
optim_wrapper.constructor=PartialNetLayerDecayOptimWrapperConstructor
optim_wrapper.paramwise_cfg.layer_decay_rate=0.9``. Each parameter group then carries
``layer_id`` and ``lr_scale``; the lr of every depth is logged once when the optimizer is
built. For classifiers, mmpretrain's own constructor does the same job
(``constructor='LearningRateDecayOptimWrapperConstructor'``, same ``layer_decay_rate`` key).
"""
from collections import defaultdict
from typing import List, Optional, Union

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

BACKBONE_PREFIX = 'backbone.'


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PartialNetLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor with the lr of each parameter scaled by its depth.

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config (with ``optimizer.lr``).
        paramwise_cfg (dict): The default constructor's options plus ``layer_decay_rate``
            (float in (0, 1]): the lr factor between one depth and the next deeper one.
            1.0 leaves every lr as the default constructor sets it.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        rate = self.paramwise_cfg.get('layer_decay_rate')
        if rate is None:
            raise ValueError(
                'PartialNetLayerDecayOptimWrapperConstructor needs '
                'optim_wrapper.paramwise_cfg.layer_decay_rate (e.g. 0.9: each layer trains at '
                '0.9 x the lr of the next deeper one); without it use the default constructor.')
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'paramwise_cfg.layer_decay_rate must be a number in (0, 1], got '
                             f'{rate!r}')
        if self.base_lr is None:
            raise ValueError('layer-wise lr decay scales optim_wrapper.optimizer.lr, which is '
                             'not set')
        self.layer_decay_rate = float(rate)

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        """The default constructor's groups; at the top level, each lr scaled by depth."""
        if prefix:  # the default constructor's recursion into submodules
            super().add_params(params, module, prefix, is_dcn_module)
            return
        get_layer_depth = self._layer_depth_of(module)
        first = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        names = {id(p): name for name, p in module.named_parameters()}
        by_layer = defaultdict(list)
        for group in params[first:]:
            name = names[id(group['params'][0])]
            layer_id, num_layers = get_layer_depth(name, BACKBONE_PREFIX)
            scale = self.layer_decay_rate**(num_layers - 1 - layer_id)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['lr_scale'] = scale
            group['layer_id'] = layer_id
            by_layer[layer_id].append(group)
        summary = ', '.join(f'{layer_id}: {groups[0]["lr_scale"]:.3g} ({len(groups)} tensors)'
                            for layer_id, groups in sorted(by_layer.items()))
        print_log(f'layer-wise lr decay {self.layer_decay_rate}: lr scale by depth {summary}',
                  logger='current')

    @staticmethod
    def _layer_depth_of(model: nn.Module):
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'get_layer_depth'):
            found = type(backbone).__name__ if backbone is not None else 'no backbone'
            raise TypeError(
                f'PartialNetLayerDecayOptimWrapperConstructor needs a model whose backbone has '
                f'get_layer_depth(param_name, prefix) (PartialNet has); '
                f'{type(model).__name__} has {found}. Remove optim_wrapper.constructor to '
                f'train without layer-wise lr decay.')
        return backbone.get_layer_depth
