"""INT8 for onnxruntime's CPU provider: a checked fp32 export quantized, then checked again.

:func:`quantize` is what ``tools/deploy.py --quantize int8`` runs, in order:

1. the fp32 export and its check (:func:`~.mmdeploy_export.deploy`): only an accepted
   ``end2end.onnx`` is quantized;
2. calibration inputs: ``calib_images`` images of the config's own dataset
   (``calib_split``, spread evenly over it), each through mmdeploy's ``create_input`` (the
   config's test pipeline) and the backend model's data preprocessor, which is what the
   exported graph's input gets when mmdeploy's backend model runs it
   (:func:`calibration_reader`);
3. onnxruntime's static quantization: QDQ format, int8 weights per output channel, uint8
   activations, ranges from the calibration inputs; what stays in float is
   :class:`QuantizationPolicy` (:func:`quantize_onnx`);
4. the check (:func:`check_quantized`): the INT8 model through mmdeploy's backend model
   against the PyTorch model on the test images, with the fp32 check's comparisons at
   :class:`Int8Tolerances`, and the dataset metric (bbox / segm mAP, mIoU, top-1) of PyTorch
   fp32, onnxruntime fp32 and onnxruntime INT8 on the config's test set with the config's
   evaluator. An INT8 model within the tolerances lands in the work dir as
   ``end2end.int8.onnx``; one beyond them is kept as ``end2end.int8.onnx.rejected`` and
   :class:`~.mmdeploy_export.ExportCheckError` reports the figures. Either way the figures
   go to ``quantize_check.json``;
5. latency of the folded PyTorch model (PartialNet folded, then every convolution-BatchNorm
   pair fused), onnxruntime fp32 and onnxruntime INT8, at each of
   ``threads``, in interleaved rounds (:func:`interleaved_latency`).

mmdeploy and onnxruntime are imported inside the functions (both optional).
"""
import copy
import dataclasses
import os
import os.path as osp
import tempfile
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch

from ..analysis.models import fastest_inference_form
from ..analysis.timing import time_interleaved
from ..analysis.report import machine_description
from ..runner.config import parse_cfg_options, scope_of
from .mmdeploy_compat import require_mmdeploy
from .mmdeploy_export import (ExportCheckError, Tolerances, build_reference_model,
                              compare_predictions, deploy, pin_onnxruntime_threads, predict,
                              settle_check)

INT8_FILE = 'end2end.int8.onnx'
REPORT_FILE = 'quantize_check.json'
# The dataset metrics the check compares, each with the factor that makes it a fraction
# (mmseg and mmpretrain report percent, mmdet fractions).
METRICS = {'coco/bbox_mAP': 1.0, 'coco/segm_mAP': 1.0, 'mIoU': 0.01, 'accuracy/top1': 0.01}
# The operators that carry the model's arithmetic; 'all' is onnxruntime's own default list.
COMPUTE_OPS = ('Conv', 'ConvTranspose', 'MatMul', 'Gemm')
OP_SETS = ('compute', 'all')
FLOAT_LAYERS = ('first', 'last')
# Inputs of these operators that carry positions or indices, not features: a layer whose
# output reaches other layers only through them (box regression into RoIAlign's rois,
# scores into a Gather's indices) is a last layer.
INDEX_INPUTS = {'RoiAlign': (1, 2), 'Gather': (1, ), 'GatherElements': (1, ),
                'GatherND': (1, ), 'ScatterND': (1, ), 'ScatterElements': (1, ),
                'Slice': (1, 2, 3, 4), 'Reshape': (1, ), 'Expand': (1, ), 'Tile': (1, ),
                'Resize': (1, 2, 3)}
SHAPE_OPS = ('Shape', 'Size')


@dataclasses.dataclass
class Int8Tolerances(Tolerances):
    """What an INT8 model must reproduce of the fp32 PyTorch model (the fp32 check's
    figures, :class:`~.mmdeploy_export.Tolerances`, with INT8's bounds), and how much of the
    dataset metric it may lose.

    Detections scoring >= ``det_score_thr`` in either model are matched one to one to the
    other model's (same class first, box IoU >= ``det_match_iou``); ``min_matched`` is the
    recall of PyTorch's detections by the INT8 model's (and the other way round).
    ``max_metric_drop``: PyTorch fp32's metric minus INT8's, each as a fraction (mAP, mIoU
    / 100, top-1 / 100), for every metric of :data:`METRICS` the evaluator reports.
    """
    min_matched: float = 0.8
    min_mean_box_iou: float = 0.9
    min_label_agreement: float = 0.95
    max_score_diff: float = 0.25
    min_mean_mask_iou: float = 0.85
    min_pixel_agreement: float = 0.95
    min_top1_agreement: float = 0.95
    max_class_score_diff: float = 0.1
    max_metric_drop: float = 0.02


# ``tools/deploy.py --int8-weight-bits``: the QuantizationPolicy.reduce_range of each choice
WEIGHT_BITS = {'auto': None, '7': True, '8': False}


@dataclasses.dataclass
class QuantizationPolicy:
    """What is quantized. ``ops``: ``'compute'`` quantizes :data:`COMPUTE_OPS` only
    (convolutions and matrix products; everything else, NMS, RoIAlign, softmax, resizing,
    the box arithmetic, stays float), ``'all'`` every operator onnxruntime can quantize.
    ``keep_float``: layers among those left in float: ``'first'`` (the layers the image
    reaches first) and / or ``'last'`` (the layers whose outputs are predictions: no other
    layer reads them as features). ``reduce_range``: 7-bit weights, onnxruntime's advice for
    x86 CPUs without VNNI (their uint8 x int8 products can saturate); ``None``: 7-bit where
    the machine that quantizes and checks the model lacks VNNI (:func:`cpu_has_vnni`), 8-bit
    where it has it (on the trained RetinaNet demo, 8-bit weights halved the largest score
    difference to PyTorch: docs/deployment.md)."""
    ops: str = 'compute'
    keep_float: Sequence[str] = ()
    reduce_range: Optional[bool] = None
    calibrate_method: str = 'MinMax'

    def __post_init__(self):
        if self.ops not in OP_SETS:
            raise ValueError(f'ops={self.ops!r}: choose from {OP_SETS}')
        unknown = set(self.keep_float) - set(FLOAT_LAYERS)
        if unknown:
            raise ValueError(f'keep_float: unknown {sorted(unknown)}; choose from '
                             f'{FLOAT_LAYERS}')
        if self.reduce_range is None:
            self.reduce_range = not cpu_has_vnni()


def cpu_has_vnni() -> bool:
    """Whether this CPU has x86's 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI or
    AMX), with which onnxruntime's uint8 x int8 products do not saturate."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line.split(':', 1)[1].split() for line in f
                          if line.startswith('flags')), [])
    except OSError:  # not Linux: the cautious choice
        return False
    return bool({'avx512_vnni', 'avx_vnni', 'amx_int8'} & set(flags))


# ------------------------------------------------------------------------ calibration
def dataset_images(model_cfg, split: str, count: int) -> List[str]:
    """``count`` image files of the config's ``<split>_dataloader`` dataset, spread evenly
    over it (all of them if it has fewer)."""
    from mmengine.registry import DATASETS
    key = f'{split}_dataloader'
    if model_cfg.get(key) is None:
        raise ValueError(f'the model config has no {key}: choose another calibration split')
    dataset_cfg = copy.deepcopy(model_cfg[key]['dataset'])
    with scope_of(model_cfg):
        dataset = DATASETS.build(dataset_cfg)
    if len(dataset) == 0:
        raise ValueError(f'the {split} dataset of the model config is empty (data_root '
                         f'{dataset_cfg.get("data_root")!r}): give its data root with '
                         f'--cfg-options, or another calibration split')
    picks = sorted(set(np.linspace(0, len(dataset) - 1, min(count, len(dataset)))
                       .round().astype(int).tolist()))
    images = []
    for i in picks:
        info = dataset.get_data_info(i)
        if 'img_path' not in info:
            raise ValueError(f'{type(dataset).__name__} gives no img_path for sample {i}')
        images.append(info['img_path'])
    return images


def model_input(task_processor, data_preprocessor, image: str, input_shape) -> torch.Tensor:
    """The tensor mmdeploy's backend model feeds its graph for ``image``: ``create_input``
    (the test pipeline), the backend model's data preprocessor, contiguous (as the
    backend models' ``forward`` passes it on)."""
    data, _ = task_processor.create_input(image, input_shape)
    with torch.no_grad():
        return data_preprocessor(data, False)['inputs'].contiguous()


def graph_input_name(onnx_file: str) -> str:
    import onnx
    graph = onnx.load(onnx_file, load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    names = [i.name for i in graph.input if i.name not in weights]
    if len(names) != 1:
        raise ValueError(f'{onnx_file}: {len(names)} graph inputs {names}; calibration feeds '
                         f'the one image input of an mmdeploy export')
    return names[0]


def calibration_reader(task_processor, data_preprocessor, images: Sequence[str], input_shape,
                       input_name: str):
    """onnxruntime's ``CalibrationDataReader`` over :func:`model_input` of each image."""
    from onnxruntime.quantization import CalibrationDataReader

    class ModelInputReader(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            image = next(self.pending, None)
            if image is None:
                return None
            inputs = model_input(task_processor, data_preprocessor, image, input_shape)
            return {input_name: inputs.cpu().numpy()}

        def rewind(self):
            self.pending = iter(images)

        def __len__(self):
            return len(images)

    return ModelInputReader()


# ------------------------------------------------------------------------ quantization
def graph_layers(graph, op_types: Iterable[str]) -> Dict[str, List[str]]:
    """Names of the ``op_types`` nodes (the layers) that are first and last: first, those the
    graph input reaches through no other layer; last, those whose outputs reach no other
    layer as features (not through :data:`INDEX_INPUTS` nor shape operators)."""
    op_types = set(op_types)
    consumers: Dict[str, List] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    weights = {t.name for t in graph.initializer}

    def reached_layers(tensors: List[str]) -> List:
        """Layers reached from ``tensors`` through non-layer operators."""
        found, seen, pending = [], set(), list(tensors)
        while pending:
            tensor = pending.pop()
            for node, position in consumers.get(tensor, []):
                if position in INDEX_INPUTS.get(node.op_type, ()) or node.op_type in SHAPE_OPS:
                    continue
                if node.op_type in op_types:
                    found.append(node)
                elif node.name not in seen:
                    seen.add(node.name)
                    pending.extend(node.output)
        return found

    inputs = [i.name for i in graph.input if i.name not in weights]
    first = {n.name for n in reached_layers(inputs)}
    last = [n.name for n in graph.node
            if n.op_type in op_types and not reached_layers(list(n.output))]
    return dict(first=sorted(first), last=last)


def check_standard_operators(model, onnx_file: str) -> None:
    custom = sorted({f'{n.domain}::{n.op_type}' for n in model.graph.node
                     if n.domain not in ('', 'ai.onnx', 'com.microsoft')})
    if custom:
        raise ValueError(f'{onnx_file} has custom operators {custom}: onnxruntime\'s '
                         f'calibration session cannot load their library; INT8 here takes '
                         f'exports of standard ONNX operators (the onnxruntime deploy configs)')


def quantize_onnx(fp32_file: str, int8_file: str, reader,
                  policy: Optional[QuantizationPolicy] = None) -> Dict:
    """onnxruntime's static QDQ quantization of ``fp32_file`` (per-channel int8 weights,
    uint8 activations, ranges from ``reader``) into ``int8_file``; returns what was
    quantized and what was kept in float."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    policy = policy or QuantizationPolicy()
    check_standard_operators(onnx.load(fp32_file, load_external_data=False), fp32_file)
    with tempfile.TemporaryDirectory(prefix='partialnet-int8-') as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        # onnxruntime's advice before quantizing: shapes inferred, graph optimised (so that
        # what is quantized is what the runtime executes)
        quant_pre_process(fp32_file, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared).graph
        layer_ops = COMPUTE_OPS if policy.ops == 'compute' else None
        layers = graph_layers(graph, COMPUTE_OPS)
        kept = sorted({name for which in policy.keep_float for name in layers[which]})
        quantize_static(
            prepared, int8_file, reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(layer_ops) if layer_ops else None, per_channel=True,
            reduce_range=policy.reduce_range, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=kept,
            calibrate_method=getattr(CalibrationMethod, policy.calibrate_method))
    return dict(policy=dataclasses.asdict(policy), kept_float=kept,
                int8_layers=quantized_layers(int8_file),
                layers=dict(Counter(n.op_type for n in graph.node if n.op_type in COMPUTE_OPS)))


def quantized_layers(int8_file: str) -> Dict[str, int]:
    """Layers (:data:`COMPUTE_OPS`) of a QDQ graph that compute in 8 bits (their input is
    dequantized from 8 bits), by type."""
    import onnx
    graph = onnx.load(int8_file).graph
    dequantized = {o for n in graph.node if n.op_type == 'DequantizeLinear' for o in n.output}
    return dict(Counter(n.op_type for n in graph.node
                        if n.op_type in COMPUTE_OPS and n.input[0] in dequantized))


# ------------------------------------------------------------------------ the check
def dataset_metrics(model_cfg, models: Dict[str, torch.nn.Module],
                    split: str = 'test') -> Dict[str, Dict[str, float]]:
    """The config's evaluator on its ``<split>_dataloader`` for each of ``models`` (batch
    1, every model on the same batches): ``{name: metrics}``."""
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(model_cfg[f'{split}_dataloader'])
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    with scope_of(model_cfg):
        loader = Runner.build_dataloader(loader_cfg)
        evaluators = {name: Evaluator(copy.deepcopy(model_cfg[f'{split}_evaluator']))
                      for name in models}
        for evaluator in evaluators.values():
            evaluator.dataset_meta = loader.dataset.metainfo
        with torch.no_grad():
            for batch in loader:
                for name, model in models.items():
                    outputs = model.test_step(copy.deepcopy(batch))
                    evaluators[name].process(data_samples=outputs, data_batch=batch)
        # scalars only (mmseg reports numpy ones); per-class tables are left out
        return {name: {k: float(v) for k, v in ev.evaluate(len(loader.dataset)).items()
                       if isinstance(v, (int, float, np.number))}
                for name, ev in evaluators.items()}


def metric_failures(metrics: Dict[str, Dict[str, float]], tol: Int8Tolerances,
                    reference: str = 'pytorch', quantized: str = 'onnxruntime_int8'):
    """(drops, failures): for each :data:`METRICS` key, ``reference`` minus ``quantized``
    as a fraction, and the ones beyond ``tol.max_metric_drop``."""
    drops = {key: (metrics[reference][key] - metrics[quantized][key]) * scale
             for key, scale in METRICS.items() if key in metrics[reference]}
    if not drops:
        return drops, [f'the evaluator reports none of {sorted(METRICS)} '
                       f'(it reports {sorted(metrics[reference])})']
    return drops, [f'{key} drops by {drop:.4f} (needs <= {tol.max_metric_drop})'
                   for key, drop in drops.items() if drop > tol.max_metric_drop]


def interleaved_latency(variants: Dict[str, Dict[int, torch.nn.Module]], data,
                        rounds: int, device: str = 'cpu') -> Dict[str, Dict[int, float]]:
    """Median seconds of ``test_step(data)`` per variant and thread count
    (``{name: {threads: model}}``), all in the same interleaved rounds; torch runs each at
    its thread count (an onnxruntime model's session is pinned to it already)."""
    steps, keys = [], []
    for name, by_threads in variants.items():
        for threads, model in by_threads.items():
            def step(model=model, threads=threads):
                torch.set_num_threads(threads)
                with torch.no_grad():
                    model.test_step(data)
            steps.append(step)
            keys.append((name, threads))
    before = torch.get_num_threads()
    try:
        seconds = time_interleaved(steps, torch.device(device), warmup=1, runs=rounds)
    finally:
        torch.set_num_threads(before)
    result: Dict[str, Dict[int, float]] = {}
    for (name, threads), s in zip(keys, seconds):
        result.setdefault(name, {})[threads] = s
    return result


def backend_model(task_processor, onnx_file: str, threads: int, device: str):
    model = task_processor.build_backend_model([onnx_file],
                                               task_processor.update_data_preprocessor)
    if device == 'cpu':
        pin_onnxruntime_threads(model, onnx_file, threads)
    return model


def check_quantized(deploy_config, model_config, checkpoint: str, fp32_file: str,
                    unverified_dir: str, work_dir: str, images: Sequence[str],
                    tolerances: Optional[Int8Tolerances] = None, metric_split: str = 'test',
                    timing_rounds: int = 5, threads: Optional[Sequence[int]] = None,
                    device: str = 'cpu', report: Optional[Dict] = None) -> Dict:
    """Check the INT8 model ``<unverified_dir>/end2end.int8.onnx`` against the PyTorch model
    (module docstring, step 4), keep or reject it (everything in ``unverified_dir`` moves
    to ``work_dir``), time it (step 5) if accepted; writes and returns the report
    (``report``'s entries included), raises :class:`ExportCheckError` if rejected."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape, get_task_type
    tol = tolerances or Int8Tolerances()
    threads = list(threads or [torch.get_num_threads()])
    int8_file = osp.join(unverified_dir, INT8_FILE)
    task = get_task_type(deploy_config).value
    input_shape = get_input_shape(deploy_config)
    task_processor = build_task_processor(model_config, deploy_config, device)
    reference = build_reference_model(model_config, checkpoint, device)
    int8 = backend_model(task_processor, int8_file, threads[0], device)
    fp32 = backend_model(task_processor, fp32_file, threads[0], device)
    try:
        figures, failures = compare_predictions(
            task, predict(task_processor, reference, images, input_shape),
            predict(task_processor, int8, images, input_shape), tol)
    except ExportCheckError as error:
        figures, failures = {}, [str(error)]
    metrics = dataset_metrics(model_config, dict(pytorch=reference, onnxruntime_fp32=fp32,
                                                 onnxruntime_int8=int8), metric_split)
    drops, metric_fails = metric_failures(metrics, tol)
    failures += metric_fails
    report = dict(report or {}, task=task, test_images=list(images), agreement=figures,
                  metrics=metrics, metric_drop=drops, metric_split=metric_split,
                  tolerances=dataclasses.asdict(tol))
    if not failures and timing_rounds:
        data, _ = task_processor.create_input(images[0], input_shape)
        folded = fastest_inference_form(copy.deepcopy(reference))
        variants = dict(pytorch_folded={n: folded for n in threads})
        for name, path, model in (('onnxruntime_fp32', fp32_file, fp32),
                                  ('onnxruntime_int8', int8_file, int8)):
            variants[name] = {n: model if n == threads[0] else
                              backend_model(task_processor, path, n, device) for n in threads}
        seconds = interleaved_latency(variants, data, timing_rounds, device)
        report['latency'] = dict(seconds=seconds, rounds=timing_rounds,
                                 image=images[0], machine=machine_description(
                                     torch.device(device)))
    return settle_check(report, unverified_dir, work_dir, REPORT_FILE, failures,
                        'the INT8 model disagrees with PyTorch beyond the INT8 tolerances, it '
                        'is kept as',
                        dict(agreement=figures, metrics=metrics))


# ------------------------------------------------------------------------ the tool
def quantize(deploy_cfg: str, model_cfg: str, checkpoint: str, img: str, work_dir: str,
             device: str = 'cpu', test_img: Optional[Union[str, Sequence[str]]] = None,
             calib_images: int = 32, calib_split: str = 'train', cfg_options=None,
             policy: Optional[QuantizationPolicy] = None,
             tolerances: Optional[Int8Tolerances] = None, metric_split: str = 'test',
             timing_rounds: int = 5, threads: Optional[Sequence[int]] = None,
             dump_info: bool = False) -> Dict:
    """The fp32 export and its check (:func:`~.mmdeploy_export.deploy`), then its INT8 model,
    checked (module docstring). Returns the INT8 report (``<work_dir>/quantize_check.json``);
    the fp32 one is ``<work_dir>/deploy_check.json``."""
    require_mmdeploy()
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape, load_config
    if device != 'cpu':
        raise ValueError(f'--quantize int8 targets onnxruntime\'s CPU provider: --device cpu '
                         f'(not {device!r})')
    if calib_images < 1:
        raise ValueError(f'calib_images = {calib_images}: give at least one image')
    policy = policy or QuantizationPolicy()
    fp32_report = deploy(deploy_cfg, model_cfg, checkpoint, img, work_dir, device, test_img,
                         dump_info, timing_rounds=0, cfg_options=cfg_options)
    if fp32_report['backend'] != 'onnxruntime':
        raise ValueError(f'--quantize int8 quantizes onnxruntime exports; {deploy_cfg} is '
                         f'for {fp32_report["backend"]}')
    fp32_file = osp.join(work_dir, osp.basename(fp32_report['files'][0]))
    deploy_config, model_config = load_config(deploy_cfg, model_cfg)
    model_config.merge_from_dict(parse_cfg_options(cfg_options))
    input_shape = get_input_shape(deploy_config)
    task_processor = build_task_processor(model_config, deploy_config, device)
    preprocessor = backend_model(task_processor, fp32_file, 1, device).data_preprocessor
    calibration = dataset_images(model_config, calib_split, calib_images)
    unverified = osp.join(work_dir, '.unverified-int8')
    os.makedirs(unverified, exist_ok=True)
    reader = calibration_reader(task_processor, preprocessor, calibration, input_shape,
                                graph_input_name(fp32_file))
    quantization = quantize_onnx(fp32_file, osp.join(unverified, INT8_FILE), reader, policy)
    report = dict(deploy_cfg=deploy_cfg, model_cfg=model_cfg, checkpoint=checkpoint,
                  cfg_options=list(cfg_options or []), fp32_file=fp32_file,
                  fp32_agreement=fp32_report['agreement'],
                  calibration=dict(split=calib_split, requested=calib_images,
                                   images=calibration),
                  quantization=quantization)
    return check_quantized(deploy_config, model_config, checkpoint, fp32_file, unverified,
                           work_dir, fp32_report['test_images'], tolerances, metric_split,
                           timing_rounds, threads, device, report)
