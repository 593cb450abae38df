"""mmdeploy rewriters under which an exported two-stage detector proposes what mmdet proposes.

mmdeploy 1.3.1's rewrite of ``RPNHead.predict_by_feat``
(``mmdeploy/codebase/mmdet/models/dense_heads/rpn_head.py``) post-processes the RPN
differently from mmdet 3.3's ``RPNHead._bbox_post_process``, and every detection of a
Mask R-CNN or Cascade Mask R-CNN starts from those proposals:

1. it runs one NMS over the proposals of all FPN levels, so a box of one level suppresses
   the boxes of the others; mmdet suppresses within each level (``batched_nms`` over the
   level ids);
2. it drops proposals whose objectness is below ``post_processing.score_threshold`` (0.05);
   mmdet keeps them all, up to ``max_per_img``;
3. it keeps boxes of zero width or height, which mmdet removes (``min_bbox_size`` = 0); and
   when fewer than ``max_per_img`` proposals survive, the zero box mmdeploy's NMS appends to
   its output reaches the RoI head, which predicts a detection for it at the image corner.

:func:`rpn_head__predict_by_feat_as_mmdet` computes mmdet's proposals inside the graph: the
top ``nms_pre`` anchors per level, boxes decoded and clipped, empty boxes removed, NMS per
level (each level its own "class" of mmdeploy's ``multiclass_nms``: the ONNX
``NonMaxSuppression`` suppresses per class), the ``max_per_img`` best kept, and the rows
after the last real proposal cut off. The batch's images share one proposal count, so in a
batch of several images the shorter lists keep zero rows, as in mmdeploy's own batching;
for one image it is exactly mmdet's list.

:func:`mmdet_rewriters` registers it for the onnxruntime backend (the backend checked here;
TensorRT keeps mmdeploy's rewrite and its static ``TRTBatchedNMS``) for the duration of an
export and removes it afterwards; importing this module imports nothing of mmdeploy.
"""
import contextlib
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

RPN_PREDICT_BY_FEAT = 'mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat'


def top_per_level(scores, deltas, priors, nms_pre: int):
    """The ``nms_pre`` highest-scoring anchors of one level (all when ``nms_pre`` <= 0);
    ``scores`` (B, n), ``deltas`` (B, n, d), ``priors`` (n, 4)."""
    priors = priors.unsqueeze(0).expand(scores.shape[0], -1, -1)
    if nms_pre <= 0:
        return scores, deltas, priors
    # mmdeploy's topk rewrite caps k at the level's size inside the graph
    scores, index = scores.topk(nms_pre, dim=1)
    index = index.unsqueeze(-1)
    return (scores, deltas.gather(1, index.expand(-1, -1, deltas.shape[-1])),
            priors.gather(1, index.expand(-1, -1, priors.shape[-1])))


def rpn_head__predict_by_feat_as_mmdet(self, cls_scores: List[torch.Tensor],
                                       bbox_preds: List[torch.Tensor],
                                       score_factors: Optional[List[torch.Tensor]] = None,
                                       batch_img_metas: Optional[List[dict]] = None,
                                       cfg=None, rescale: bool = False,
                                       with_nms: bool = True, **kwargs):
    """``RPNHead.predict_by_feat`` for export, post-processing as mmdet does (module
    docstring). Returns mmdeploy's ``(dets, labels)``: ``dets`` (B, k, 5) boxes and
    objectness, ``labels`` (B, k) the FPN level of each proposal."""
    from mmdeploy.mmcv.ops import multiclass_nms
    cfg = self.test_cfg if cfg is None else cfg
    batch, num_levels = cls_scores[0].shape[0], len(cls_scores)
    priors = self.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                              device=cls_scores[0].device)
    levels = []
    for level, (score, delta, prior) in enumerate(zip(cls_scores, bbox_preds, priors)):
        score = score.permute(0, 2, 3, 1)
        if self.use_sigmoid_cls:
            score = score.reshape(batch, -1).sigmoid()
        else:  # foreground is channel 0 of the two (mmdet >= 2.5)
            score = score.reshape(batch, -1, 2).softmax(-1)[..., 0]
        delta = delta.permute(0, 2, 3, 1).reshape(batch, -1, self.bbox_coder.encode_size)
        score, delta, prior = top_per_level(score, delta, prior, cfg.get('nms_pre', -1))
        # this level's column of a (B, n, levels) score table: NMS runs per column
        levels.append((F.pad(score.unsqueeze(-1), (level, num_levels - 1 - level)),
                       delta, prior))
    scores, deltas, priors = (torch.cat(parts, dim=1) for parts in zip(*levels))
    boxes = self.bbox_coder.decode(priors, deltas, max_shape=batch_img_metas[0]['img_shape'])
    if not with_nms:
        return boxes, scores.sum(-1, keepdim=True)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:  # an empty box scores 0, which the NMS's threshold of 0 drops
        wide = (boxes[..., 2] - boxes[..., 0] > min_size) & (boxes[..., 3] - boxes[..., 1]
                                                             > min_size)
        scores = scores * wide.unsqueeze(-1).to(scores.dtype)
    max_per_img = cfg.max_per_img
    dets, labels = multiclass_nms(boxes, scores, max_output_boxes_per_class=max_per_img,
                                  iou_threshold=cfg.nms.iou_threshold, score_threshold=0.0,
                                  keep_top_k=max_per_img, nms_type=cfg.nms.get('type', 'nms'))
    # rows sorted by score: the real proposals (objectness > 0) come first
    kept = torch.arange((dets[..., 4] > 0).sum(1).max(), device=dets.device)
    return dets.index_select(1, kept), labels.index_select(1, kept)


@contextlib.contextmanager
def mmdet_rewriters() -> Iterator[None]:
    """Register :func:`rpn_head__predict_by_feat_as_mmdet` in mmdeploy's function rewriter
    (onnxruntime backend: it takes precedence over mmdeploy's default rewrite) inside the
    block; afterwards the registry is as it was."""
    from mmdeploy.core import FUNCTION_REWRITER
    FUNCTION_REWRITER.register_rewriter(RPN_PREDICT_BY_FEAT, backend='onnxruntime')(
        rpn_head__predict_by_feat_as_mmdet)
    try:
        yield
    finally:
        FUNCTION_REWRITER._registry.remove_record(rpn_head__predict_by_feat_as_mmdet)
