"""mmdeploy rewriters under which an exported detector post-processes as mmdet does.

**The RPN** (Mask R-CNN, Cascade Mask R-CNN). mmdeploy 1.3.1's rewrite of
``RPNHead.predict_by_feat`` (``mmdeploy/codebase/mmdet/models/dense_heads/rpn_head.py``)
post-processes the RPN differently from mmdet 3.3's ``RPNHead._bbox_post_process``, and
every detection of a two-stage model starts from those proposals:

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

**RTMDet and RTMDet-Ins.** mmdeploy's rewrites of ``RTMDetHead.predict_by_feat`` and
``RTMDetInsHead.predict_by_feat`` decode the boxes without clipping them to the image, where
mmdet's decoder clips them before the NMS: a detection reaching past the border keeps its
full extent (box IoU 0.64 against mmdet's on the demo). The rewrites below decode through
the box coder (mmdeploy's own ``distance2bbox`` rewrite clips, with the image size traced in
a dynamic graph) and otherwise keep mmdeploy's post-processing (``_nms_with_mask_static``
for the masks). mmdeploy's mask decoding also asks mmdet's point generator for its grid
without a device, and mmdet's default device is ``'cuda'``, so on a machine without CUDA
the export stops; :func:`point_generator__single_level_grid_priors` makes the default the
CPU (mmdeploy moves the grid to the features' device next).

:func:`mmdet_rewriters` registers these for the onnxruntime backend (the backend checked
here; TensorRT keeps mmdeploy's rewrites, its static ``TRTBatchedNMS`` among them) for the
duration of an export and removes them afterwards; importing this module imports nothing
of mmdeploy.
"""
import contextlib
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

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


def flat_levels(maps: List[torch.Tensor]) -> torch.Tensor:
    """Per-level (B, C, H, W) maps as one (B, sum of H * W, C) tensor, levels in order."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps],
                     dim=1)


def rtmdet_flat_outputs(self, cls_scores, bbox_preds, batch_img_metas, with_stride=False):
    """RTMDet's per-level maps flattened over the levels: (priors, scores, boxes), the boxes
    decoded and clipped to the image as mmdet's ``_predict_by_feat_single`` does."""
    priors = torch.cat(self.prior_generator.grid_priors(
        [s.shape[2:] for s in cls_scores], device=cls_scores[0].device, with_stride=with_stride))
    scores, distances = flat_levels(cls_scores).sigmoid(), flat_levels(bbox_preds)
    # the coder wants (B, N, 2) points
    points = priors[..., :2].unsqueeze(0).expand(scores.shape[0], -1, -1)
    boxes = self.bbox_coder.decode(points, distances, max_shape=batch_img_metas[0]['img_shape'])
    return priors, scores, boxes


def nms_settings(cfg, deploy_cfg) -> dict:
    """mmdeploy's NMS arguments for a one-stage head: the model's test_cfg, else the deploy
    config's post_processing (as mmdeploy's rewrites read them)."""
    from mmdeploy.codebase.mmdet import get_post_processing_params
    post = get_post_processing_params(deploy_cfg)
    return dict(max_output_boxes_per_class=post.max_output_boxes_per_class,
                iou_threshold=cfg.nms.get('iou_threshold', post.iou_threshold),
                score_threshold=cfg.get('score_thr', post.score_threshold),
                pre_top_k=post.pre_top_k, keep_top_k=cfg.get('max_per_img', post.keep_top_k))


def rtmdet_head__predict_by_feat_as_mmdet(self, cls_scores, bbox_preds, batch_img_metas=None,
                                          cfg=None, rescale: bool = False,
                                          with_nms: bool = True):
    """``RTMDetHead.predict_by_feat`` for export, boxes clipped (module docstring); returns
    mmdeploy's ``(dets, labels)``."""
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.mmcv.ops import multiclass_nms
    cfg = self.test_cfg if cfg is None else cfg
    _, scores, boxes = rtmdet_flat_outputs(self, cls_scores, bbox_preds, batch_img_metas)
    if not with_nms:
        return boxes, scores
    return multiclass_nms(boxes, scores, nms_type=cfg.nms.get('type'),
                          **nms_settings(cfg, FUNCTION_REWRITER.get_context().cfg))


def rtmdet_ins_head__predict_by_feat_as_mmdet(self, cls_scores, bbox_preds, kernel_preds,
                                              mask_feat, score_factors=None,
                                              batch_img_metas=None, cfg=None,
                                              rescale: bool = False, with_nms: bool = True):
    """``RTMDetInsHead.predict_by_feat`` for export, boxes clipped (module docstring);
    returns mmdeploy's ``(dets, labels, masks)``."""
    from mmdeploy.codebase.mmdet.models.dense_heads.rtmdet_ins_head import \
        _nms_with_mask_static
    from mmdeploy.core import FUNCTION_REWRITER
    cfg = self.test_cfg if cfg is None else cfg
    priors, scores, boxes = rtmdet_flat_outputs(self, cls_scores, bbox_preds, batch_img_metas,
                                                with_stride=True)
    kernels = flat_levels(kernel_preds)
    nms = nms_settings(cfg, FUNCTION_REWRITER.get_context().cfg)
    return _nms_with_mask_static(self, priors, boxes, scores, kernels, mask_feat,
                                 nms['max_output_boxes_per_class'], nms['iou_threshold'],
                                 nms['score_threshold'], nms['pre_top_k'], nms['keep_top_k'],
                                 cfg.get('mask_thr_binary', 0.5))


def point_generator__single_level_grid_priors(self, featmap_size, level_idx,
                                              dtype=torch.float32, device='cpu',
                                              with_stride: bool = False):
    """mmdet's ``MlvlPointGenerator.single_level_grid_priors`` with the CPU as the default
    device in place of CUDA (module docstring)."""
    from mmdeploy.core import FUNCTION_REWRITER
    return FUNCTION_REWRITER.get_context().origin_func(self, featmap_size, level_idx,
                                                       dtype=dtype, device=device,
                                                       with_stride=with_stride)


REWRITERS = {
    'mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat':
        rpn_head__predict_by_feat_as_mmdet,
    'mmdet.models.dense_heads.rtmdet_head.RTMDetHead.predict_by_feat':
        rtmdet_head__predict_by_feat_as_mmdet,
    'mmdet.models.dense_heads.rtmdet_ins_head.RTMDetInsHead.predict_by_feat':
        rtmdet_ins_head__predict_by_feat_as_mmdet,
    'mmdet.models.task_modules.prior_generators.point_generator.MlvlPointGenerator.'
    'single_level_grid_priors': point_generator__single_level_grid_priors,
}


@contextlib.contextmanager
def mmdet_rewriters() -> Iterator[None]:
    """Register :data:`REWRITERS` in mmdeploy's function rewriter (onnxruntime backend:
    they take precedence over mmdeploy's default rewrites) inside the block; afterwards the
    registry is as it was."""
    from mmdeploy.core import FUNCTION_REWRITER
    for path, rewriter in REWRITERS.items():
        FUNCTION_REWRITER.register_rewriter(path, backend='onnxruntime')(rewriter)
    try:
        yield
    finally:
        for rewriter in REWRITERS.values():
            FUNCTION_REWRITER._registry.remove_record(rewriter)
