"""Whole-model ONNX export through MMDeploy, checked against PyTorch before it is kept.

:func:`deploy` is what ``tools/deploy.py`` runs, in mmdeploy's own steps: mmdeploy's
``torch2onnx`` builds the model (its ``BaseTask.build_pytorch_model`` calls the backbone's
``switch_to_deploy()``, so the graph holds the folded PartialNet), rewrites the heads for
export (NMS, RoIAlign, argmax inside the graph) and writes ``end2end.onnx``; the patches of
:mod:`.mmdeploy_compat` and the rewriters of :mod:`.mmdet_rewriters` (the RPN and RTMDet
heads post-processing as mmdet does) are active during that call only. mmdeploy's
``to_backend`` then
makes the backend's files (onnxruntime runs the ONNX file itself; a TensorRT engine is
prepared in configs/deploy but not tried: no GPU here). The result is run through mmdeploy's
backend model and compared with the PyTorch model of the checkpoint (unfolded, as
mmdet/mmseg/mmpretrain run it) on the test images, both fed the same preprocessed input by
mmdeploy's ``create_input``. Only an export that agrees within :class:`Tolerances` lands in
``<work_dir>`` as ``end2end.onnx``; one that does not is kept as ``end2end.onnx.rejected``
and :class:`ExportCheckError` reports the figures.

mmdeploy is optional (``pip install -e .[deploy]``): it is imported inside the functions.
"""
import copy
import dataclasses
import glob
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torchvision.ops import box_iou

from ..analysis.timing import time_interleaved
from ..analysis.models import build_config_model, switch_model_to_deploy
from ..analysis.report import machine_description
from ..runner.config import parse_cfg_options
from .mmdeploy_compat import mmdeploy_torch_compat, require_mmdeploy
from .mmdet_rewriters import mmdet_rewriters

SAVE_FILE = 'end2end.onnx'
REPORT_FILE = 'deploy_check.json'


class ExportCheckError(RuntimeError):
    """The exported model's predictions differ from PyTorch's beyond :class:`Tolerances`."""


@dataclasses.dataclass
class Tolerances:
    """What the exported model must reproduce, per task (what a deploying user accepts).

    Detection: the detections of either model scoring at least ``det_score_thr`` (mmdet's
    visualisation default) are matched one to one to the other model's (greedy by score,
    same image, same class first, box IoU >= ``det_match_iou``); candidates may score down
    to ``det_score_thr - det_score_margin``, so a detection at 0.301 against 0.299 is not a
    disagreement.
    """
    det_score_thr: float = 0.3
    det_score_margin: float = 0.05
    det_match_iou: float = 0.5
    min_matched: float = 0.95  # of the compared detections, in each direction
    min_mean_box_iou: float = 0.99
    min_label_agreement: float = 0.99  # of the matched pairs
    max_score_diff: float = 0.02
    min_mean_mask_iou: float = 0.95
    min_pixel_agreement: float = 0.99  # segmentation label maps
    min_top1_agreement: float = 1.0  # classification
    max_class_score_diff: float = 1e-3


# ------------------------------------------------------------------------ comparisons
def match_detections(ref, got, tol: Tolerances):
    """Greedy one-to-one matching of ``ref``'s confident detections to ``got``'s (both
    ``InstanceData`` with bboxes, scores, labels), same-class candidates first; returns
    (pairs, number compared)."""
    compared = torch.nonzero(ref.scores >= tol.det_score_thr).flatten()
    compared = compared[ref.scores[compared].argsort(descending=True)]
    candidates = torch.nonzero(got.scores >= tol.det_score_thr - tol.det_score_margin).flatten()
    pairs, taken = [], set()
    if len(compared) and len(candidates):
        ious = box_iou(ref.bboxes[compared].float(), got.bboxes[candidates].float())
        # a candidate of the same class first (IoU <= 1 < 2): class-aware NMS keeps one box
        # per class, so boxes of other classes can overlap it as much
        same_label = ref.labels[compared][:, None] == got.labels[candidates][None]
        preference = (ious + 2 * same_label).argsort(dim=1, descending=True, stable=True)
        for row, i in enumerate(compared.tolist()):
            order = preference[row].tolist()
            free = [k for k in order if k not in taken and ious[row, k] >= tol.det_match_iou]
            if free:
                taken.add(free[0])
                pairs.append((i, int(candidates[free[0]]), float(ious[row, free[0]])))
    return pairs, len(compared)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def compare_detections(reference: list, exported: list, tol: Tolerances) -> Dict:
    """Agreement figures of two lists of ``DetDataSample`` (same images)."""
    matched = compared = back_matched = back_compared = 0
    box_ious, labels_equal, score_diffs, mask_ious = [], [], [], []
    for ref_sample, got_sample in zip(reference, exported):
        ref, got = ref_sample.pred_instances.cpu(), got_sample.pred_instances.cpu()
        if ('masks' in ref) != ('masks' in got):
            raise ExportCheckError(f'masks: PyTorch predicts {"some" if "masks" in ref else "none"}'
                                   f', the export {"some" if "masks" in got else "none"}')
        pairs, n = match_detections(ref, got, tol)
        back_pairs, back_n = match_detections(got, ref, tol)
        matched, compared = matched + len(pairs), compared + n
        back_matched, back_compared = back_matched + len(back_pairs), back_compared + back_n
        for i, j, iou in pairs:
            box_ious.append(iou)
            labels_equal.append(bool(ref.labels[i] == got.labels[j]))
            score_diffs.append(abs(float(ref.scores[i]) - float(got.scores[j])))
            if 'masks' in ref and 'masks' in got:
                mask_ious.append(mask_iou(torch.as_tensor(ref.masks[i]).bool(),
                                          torch.as_tensor(got.masks[j]).bool()))
    figures = dict(
        compared_detections=compared, compared_detections_exported=back_compared,
        matched=matched / compared if compared else None,
        matched_exported=back_matched / back_compared if back_compared else None,
        mean_box_iou=float(np.mean(box_ious)) if box_ious else None,
        min_box_iou=float(np.min(box_ious)) if box_ious else None,
        label_agreement=float(np.mean(labels_equal)) if labels_equal else None,
        max_score_diff=float(np.max(score_diffs)) if score_diffs else None)
    if mask_ious:
        figures.update(mean_mask_iou=float(np.mean(mask_ious)),
                       min_mask_iou=float(np.min(mask_ious)))
    return figures


def detection_failures(figures: Dict, tol: Tolerances) -> List[str]:
    if not figures['compared_detections']:
        return [f'nothing to compare: PyTorch predicts no detection scoring >= '
                f'{tol.det_score_thr} on the test images (random weights? give a trained '
                f'checkpoint, or other --test-img)']
    checks = [('matched', tol.min_matched, '>='), ('matched_exported', tol.min_matched, '>='),
              ('mean_box_iou', tol.min_mean_box_iou, '>='),
              ('label_agreement', tol.min_label_agreement, '>='),
              ('max_score_diff', tol.max_score_diff, '<='),
              ('mean_mask_iou', tol.min_mean_mask_iou, '>=')]
    return failed_checks(figures, checks)


def failed_checks(figures: Dict, checks) -> List[str]:
    failures = []
    for key, bound, sign in checks:
        value = figures.get(key)
        if value is None:
            continue
        if (value < bound) if sign == '>=' else (value > bound):
            failures.append(f'{key} = {value:.6g} (needs {sign} {bound})')
    return failures


def compare_segmentation(reference: list, exported: list, tol: Tolerances) -> Dict:
    equal = total = 0
    for ref, got in zip(reference, exported):
        a, b = ref.pred_sem_seg.data.cpu(), got.pred_sem_seg.data.cpu()
        if a.shape != b.shape:
            raise ExportCheckError(f'label map shapes differ: PyTorch {tuple(a.shape)}, '
                                   f'exported {tuple(b.shape)}')
        equal, total = equal + (a == b.to(a.dtype)).sum().item(), total + a.numel()
    return dict(pixels=total, pixel_agreement=equal / total)


def compare_classification(reference: list, exported: list, tol: Tolerances) -> Dict:
    top1 = [int(r.pred_label) == int(g.pred_label) for r, g in zip(reference, exported)]
    diffs = [float((r.pred_score.cpu() - g.pred_score.cpu()).abs().max())
             for r, g in zip(reference, exported)]
    return dict(images=len(top1), top1_agreement=float(np.mean(top1)),
                max_score_diff=max(diffs))


def compare_predictions(task: str, reference: list, exported: list, tol: Tolerances):
    """(figures, failures) for the mmdeploy task name of the deploy config."""
    if task in ('ObjectDetection', 'InstanceSegmentation'):
        figures = compare_detections(reference, exported, tol)
        return figures, detection_failures(figures, tol)
    if task == 'Segmentation':
        figures = compare_segmentation(reference, exported, tol)
        return figures, failed_checks(figures, [('pixel_agreement', tol.min_pixel_agreement,
                                                 '>=')])
    if task == 'Classification':
        figures = compare_classification(reference, exported, tol)
        return figures, failed_checks(figures, [
            ('top1_agreement', tol.min_top1_agreement, '>='),
            ('max_score_diff', tol.max_class_score_diff, '<=')])
    raise ValueError(f'no comparison for mmdeploy task {task!r}')


# ------------------------------------------------------------------------ models
def pin_onnxruntime_threads(backend_model, onnx_file: str, threads: int) -> None:
    """Re-create the backend model's onnxruntime session with ``threads`` intra-op threads
    (mmdeploy's ORTWrapper takes all cores), so it is timed as PyTorch is."""
    import onnxruntime as ort
    from mmdeploy.backend.onnxruntime.init_plugins import get_ops_path
    wrapper = backend_model.wrapper
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if osp.exists(get_ops_path()):
        options.register_custom_ops_library(get_ops_path())
    wrapper.sess = ort.InferenceSession(onnx_file, options,
                                        providers=wrapper.sess.get_providers())
    wrapper.io_binding = wrapper.sess.io_binding()


def build_reference_model(model_cfg, checkpoint: str, device: str) -> torch.nn.Module:
    """The checkpoint's model as mmengine's Runner builds it (unfolded, eval mode): a
    top-level ``data_preprocessor`` (mmpretrain's configs) goes into the model."""
    model_cfg = copy.deepcopy(model_cfg)
    if model_cfg.get('data_preprocessor') is not None:
        model_cfg.model.setdefault('data_preprocessor', model_cfg.data_preprocessor)
    return build_config_model(model_cfg, checkpoint).to(device)


def predict(task_processor, model, images: Sequence[str], input_shape) -> list:
    """``model.test_step`` on each image, preprocessed by mmdeploy's ``create_input``."""
    samples = []
    with torch.no_grad():
        for image in images:
            data, _ = task_processor.create_input(image, input_shape)
            samples.extend(model.test_step(data))
    return samples


def latency(task_processor, models: Dict[str, torch.nn.Module], image: str, input_shape,
            rounds: int, device: str) -> Dict[str, float]:
    """Median seconds of ``test_step`` (preprocessing to predictions) per model on one
    image, in interleaved rounds."""
    def step(model):
        def run():
            data, _ = task_processor.create_input(image, input_shape)
            with torch.no_grad():
                model.test_step(data)
        return run

    seconds = time_interleaved([step(m) for m in models.values()], torch.device(device),
                               warmup=1, runs=rounds)
    return dict(zip(models, seconds))


# ------------------------------------------------------------------------ the tool
def export_end2end(deploy_cfg, model_cfg, checkpoint: str, img: str, out_dir: str,
                   device: str) -> List[str]:
    """mmdeploy's ``torch2onnx`` into ``out_dir`` (torch patched for it, and the heads'
    post-processing of :mod:`.mmdet_rewriters` registered, meanwhile), then its
    ``to_backend`` (onnxruntime: the ONNX file itself; TensorRT: an engine). Returns the
    backend files."""
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import get_backend
    with mmdeploy_torch_compat(), mmdet_rewriters():
        torch2onnx(img, out_dir, SAVE_FILE, deploy_cfg, model_cfg, checkpoint, device=device)
    return to_backend(get_backend(deploy_cfg).value, [osp.join(out_dir, SAVE_FILE)], out_dir,
                      deploy_cfg, device=device)


def keep_or_reject(out_dir: str, work_dir: str, rejected: bool) -> List[str]:
    """Move what the export wrote into ``work_dir`` (``.rejected`` appended if it failed its
    check); returns the new paths."""
    moved = []
    for name in sorted(os.listdir(out_dir)):
        target = osp.join(work_dir, name + ('.rejected' if rejected else ''))
        os.replace(osp.join(out_dir, name), target)
        moved.append(target)
    shutil.rmtree(out_dir, ignore_errors=True)
    return moved


def settle_check(report: Dict, out_dir: str, work_dir: str, report_file: str,
                 failures: List[str], subject: str, figures) -> Dict:
    """The end of a check: what ``out_dir`` holds kept in ``work_dir`` (``.rejected`` if
    there are ``failures``), the report written to ``<work_dir>/<report_file>`` either way,
    and if rejected an :class:`ExportCheckError`: ``subject`` (ending in "kept as"), the
    kept files, the failures and ``figures``. Returns the report."""
    report['files'] = keep_or_reject(out_dir, work_dir, rejected=bool(failures))
    report['failures'] = failures
    with open(osp.join(work_dir, report_file), 'w') as f:
        json.dump(report, f, indent=2)
    if failures:
        raise ExportCheckError(
            f'{subject} {", ".join(report["files"])}: ' + '; '.join(failures)
            + f'. All figures: {json.dumps(figures)}')
    return report


def deploy(deploy_cfg: str, model_cfg: str, checkpoint: str, img: str, work_dir: str,
           device: str = 'cpu', test_img: Optional[Union[str, Sequence[str]]] = None,
           dump_info: bool = False, tolerances: Optional[Tolerances] = None,
           timing_rounds: int = 5, cfg_options=None) -> Dict:
    """Export ``<work_dir>/end2end.onnx`` with mmdeploy and check it (module docstring).

    ``img`` is the image the graph is traced with; ``test_img`` (default: ``img``) the images
    it is compared on. ``timing_rounds`` = 0 skips the latency measurement. ``cfg_options``
    (``--cfg-options``: a dict or ``key=value`` strings) are merged into the model config.
    Returns the report written to ``<work_dir>/deploy_check.json``.
    """
    require_mmdeploy()
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_backend, get_input_shape, get_task_type, load_config

    tol = tolerances or Tolerances()
    deploy_config, model_config = load_config(deploy_cfg, model_cfg)
    model_config.merge_from_dict(parse_cfg_options(cfg_options))
    backend = get_backend(deploy_config).value
    os.makedirs(work_dir, exist_ok=True)
    for stale in glob.glob(osp.join(work_dir, 'end2end.*')):  # no old file passes for new
        os.remove(stale)
    if dump_info:
        from mmdeploy.backend.sdk.export_info import export2SDK
        export2SDK(deploy_config, model_config, work_dir, pth=checkpoint, device=device)

    out_dir = osp.join(work_dir, '.unverified')
    backend_files = export_end2end(deploy_config, model_config, checkpoint, img, out_dir,
                                   device)
    task = get_task_type(deploy_config).value
    input_shape = get_input_shape(deploy_config)
    task_processor = build_task_processor(model_config, deploy_config, device)
    exported = task_processor.build_backend_model(backend_files,
                                                  task_processor.update_data_preprocessor)
    threads = torch.get_num_threads()
    if backend == 'onnxruntime' and device == 'cpu':
        pin_onnxruntime_threads(exported, backend_files[0], threads)
    reference = build_reference_model(model_config, checkpoint, device)
    images = [test_img] if isinstance(test_img, str) else list(test_img or [img])
    try:
        figures, failures = compare_predictions(
            task, predict(task_processor, reference, images, input_shape),
            predict(task_processor, exported, images, input_shape), tol)
    except ExportCheckError as error:  # outputs that cannot be compared: rejected too
        figures, failures = {}, [str(error)]

    report = dict(task=task, backend=backend, deploy_cfg=deploy_cfg, model_cfg=model_cfg,
                  checkpoint=checkpoint, test_images=images, agreement=figures,
                  tolerances=dataclasses.asdict(tol))
    if not failures and timing_rounds:
        fused = switch_model_to_deploy(copy.deepcopy(reference))
        seconds = latency(task_processor, {backend: exported, 'pytorch_fused': fused},
                          images[0], input_shape, timing_rounds, device)
        report['latency'] = dict(
            seconds, pytorch_fused_over_backend=seconds['pytorch_fused'] / seconds[backend],
            threads=threads, rounds=timing_rounds,
            machine=machine_description(torch.device(device)))
    return settle_check(report, out_dir, work_dir, REPORT_FILE, failures,
                        f'{backend} disagrees with PyTorch on {len(images)} test image(s), '
                        'the export is kept as', figures)
