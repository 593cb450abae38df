"""Classification head of PartialNet for mmpretrain's ``ImageClassifier``."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmengine.registry import MODELS
from mmpretrain.models.heads import ClsHead

from ..archs import check_act_cfg, parse_arch


@MODELS.register_module()
class PartialNetClsHead(ClsHead):
    """The authors' classifier: global average pool -> 1x1 conv -> activation -> linear.

    Args:
        num_classes (int): Number of classes.
        arch (str | dict, optional): The backbone's arch; ``in_channels`` and ``act_cfg``
            are derived from it when not given. Defaults to None.
        in_channels (int, optional): Channels of the last backbone stage.
        feat_channels (int): Width of the 1x1 projection. Defaults to 1280.
        act_cfg (dict, optional): Activation after the projection (the backbone's own:
            GELU for t0/t1, ReLU otherwise).
        init_cfg (dict | list[dict]): Defaults to truncated normal (std 0.02, zero bias).
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of :class:`mmpretrain.models.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 arch=None,
                 in_channels: Optional[int] = None,
                 feat_channels: int = 1280,
                 act_cfg: Optional[dict] = None,
                 init_cfg=dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02,
                               bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if arch is not None:
            settings = parse_arch(arch)
            in_channels = in_channels or settings['embed_dims'][-1]
            act_cfg = act_cfg or settings['act_cfg']
        if in_channels is None or act_cfg is None:
            raise ValueError('PartialNetClsHead needs `arch`, or both `in_channels` and '
                             '`act_cfg`')
        check_act_cfg(act_cfg, 'PartialNetClsHead act_cfg')
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feat_proj = nn.Conv2d(in_channels, feat_channels, kernel_size=1, bias=False)
        self.act = build_activation_layer(act_cfg)
        self.fc = nn.Linear(feat_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The 1280-d feature before the final linear layer."""
        x = feats[-1]
        return torch.flatten(self.act(self.feat_proj(self.pool(x))), 1)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))
