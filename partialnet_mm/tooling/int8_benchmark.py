"""Latency at the edge: whole models as PyTorch runs them (folded, fp32) and as onnxruntime
runs their mmdeploy export, fp32 and INT8, at each family's test size, batch 1.

``tools/benchmark.py --int8 FAMILY ...`` runs :func:`run_int8_benchmark`. Per family
(:data:`INT8_FAMILIES`) and backbone: the model with random weights (latency does not depend
on the values; with random weights the detectors keep few detections, so work after the
final NMS, such as mask heads, is small in every variant alike); its export by mmdeploy's
``torch2onnx`` (:func:`~.mmdeploy_export.export_end2end`, as ``tools/deploy.py`` exports);
its INT8 model (:func:`~.quantize.quantize_onnx`, the default policy, calibrated on the timed
image: calibration sets scales, not speed); then ``test_step`` of the three, each at every
thread count, all in the same interleaved rounds
(:func:`~.quantize.interleaved_latency`): a load change on a shared machine affects every
variant alike. The timed image is a synthetic scene whose test pipeline output is the
family's test size. Families of the README's peers table build every backbone as that table
does (:func:`~partialnet_mm.tooling.peers.peer_config`); the others take PartialNet archs.
"""
import copy
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..analysis.models import fastest_inference_form
from . import peers
from ..analysis.report import machine_description, markdown_table, write_json_report
from .demo_data import synth_scene
from ..runner.config import load_config, project_file
from ..deploy.mmdeploy_compat import require_mmdeploy
from ..deploy.mmdeploy_export import build_reference_model, export_end2end
from ..deploy.quantize import (INT8_FILE, QuantizationPolicy, backend_model, calibration_reader,
                       graph_input_name, interleaved_latency, model_input, quantize_onnx)


class Int8Family(NamedTuple):
    title: str
    config: str  # relative to the project root, ``{arch}`` for the PartialNet arch
    deploy_cfg: str  # relative to configs/deploy
    image_hw: Tuple[int, int]  # an image the test pipeline keeps at the family's test size
    peer_family: Optional[str] = None  # its key in peers.FAMILIES: other backbones allowed


# The test sizes: mmdet's 1333 x 800 resize (an 800 x 1333 image stays, padded to 800 x
# 1344), RTMDet's 640 x 640, mmseg's 2048 x 512 resize of a 512 x 512 image, the ImageNet
# configs' 224 x 224 centre crop of the 256-pixel short side.
INT8_FAMILIES = OrderedDict([
    ('retinanet', Int8Family('RetinaNet', 'configs/retinanet_partialnet_{arch}_coco.py',
                             'mmdet/detection/detection_onnxruntime_dynamic.py', (800, 1333),
                             'retinanet')),
    ('mask_rcnn', Int8Family('Mask R-CNN', 'configs/mask_rcnn_partialnet_{arch}_coco.py',
                             'mmdet/instance-seg/instance-seg_onnxruntime_dynamic.py',
                             (800, 1333), 'mask_rcnn')),
    ('rtmdet', Int8Family('RTMDet', 'configs/rtmdet_partialnet_{arch}_coco.py',
                          'mmdet/detection/detection_onnxruntime_static.py', (640, 640),
                          'rtmdet')),
    ('rtmdet_ins', Int8Family(
        'RTMDet-Ins', 'configs/rtmdet-ins_partialnet_{arch}_coco.py',
        'mmdet/instance-seg/instance-seg_rtmdet-ins_onnxruntime_static-640x640.py',
        (640, 640))),
    ('fpn', Int8Family('Semantic FPN', 'configs/fpn_partialnet_{arch}_ade20k.py',
                       'mmseg/segmentation_onnxruntime_dynamic.py', (512, 512), 'fpn')),
    ('upernet', Int8Family('UperNet', 'configs/upernet_partialnet_{arch}_ade20k.py',
                           'mmseg/segmentation_onnxruntime_dynamic.py', (512, 512))),
    ('classifier', Int8Family('classifier', 'configs/partialnet_{arch}_imagenet.py',
                              'mmpretrain/classification_onnxruntime_dynamic.py', (256, 256))),
])
DEFAULT_BACKBONES = ('t0', 't2', 'fasternet_t2', 'r50')
VARIANTS = ('pytorch_folded', 'onnxruntime_fp32', 'onnxruntime_int8')


def add_arguments(parser) -> None:
    """``tools/benchmark.py``'s options for the INT8 latency table (with ``--backbones``,
    ``--runs``, ``--json`` of the peers options)."""
    parser.add_argument('--int8', nargs='+', choices=list(INT8_FAMILIES), default=None,
                        help='whole models of these families: folded PyTorch, onnxruntime '
                        'fp32 and INT8 (mmdeploy exports), batch 1, at --int8-threads')
    parser.add_argument('--int8-threads', type=int, nargs='+', default=[1, 2],
                        help='--int8: thread counts (default 1 2)')


def check_arguments(parser, args):
    """``--int8``'s own rules; its backbones default to :data:`DEFAULT_BACKBONES` (other
    backbones than PartialNet's only in the families of the peers table)."""
    if (args.peers or args.arch or args.config or args.amp or args.device or args.train
            or args.threads is not None):
        parser.error('--int8 takes families, --backbones, --int8-threads (not --threads), '
                     '--runs and --json (CPU, batch 1, fp32 and INT8)')
    if args.backbones == list(peers.DEFAULT_BACKBONES):
        args.backbones = list(DEFAULT_BACKBONES)
    if args.runs < 1 or min(args.int8_threads) < 1:
        parser.error('--runs and --int8-threads must be positive')
    return args


def family_config(family: str, backbone: str):
    """The model config of ``family`` with ``backbone``."""
    spec = INT8_FAMILIES[family]
    if spec.peer_family:
        return peers.peer_config(spec.peer_family, backbone)
    if backbone not in peers.PARTIALNET_ARCHS:
        raise ValueError(f'{family}: PartialNet archs only, not {backbone!r}')
    return load_config(project_file(spec.config.format(arch=backbone)))


def synthetic_image(path: str, hw: Tuple[int, int]) -> str:
    import cv2
    image, _ = synth_scene(np.random.default_rng(0), *hw)
    cv2.imwrite(path, image)
    return path


def benchmark_model(family: str, backbone: str, threads: Sequence[int], rounds: int,
                    tmp: str, policy: Optional[QuantizationPolicy] = None) -> Dict:
    """One row: the latency (ms) of each variant at each thread count, and the INT8 graph's
    quantized operators."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape
    from mmdeploy.utils import load_config as load_deploy_config
    spec = INT8_FAMILIES[family]
    model_config = family_config(family, backbone)
    deploy_config = load_deploy_config(project_file(osp.join('configs', 'deploy',
                                                              spec.deploy_cfg)))[0]
    torch.manual_seed(0)
    reference = build_reference_model(model_config, None, 'cpu')
    checkpoint = osp.join(tmp, 'random.pth')
    torch.save(dict(state_dict=reference.state_dict()), checkpoint)
    image = synthetic_image(osp.join(tmp, 'image.jpg'), spec.image_hw)
    fp32_file = export_end2end(deploy_config, model_config, checkpoint, image,
                               osp.join(tmp, 'fp32'), 'cpu')[0]
    task_processor = build_task_processor(model_config, deploy_config, 'cpu')
    input_shape = get_input_shape(deploy_config)
    fp32 = {n: backend_model(task_processor, fp32_file, n, 'cpu') for n in threads}
    preprocessor = fp32[threads[0]].data_preprocessor
    int8_file = osp.join(tmp, INT8_FILE)
    reader = calibration_reader(task_processor, preprocessor, [image], input_shape,
                                graph_input_name(fp32_file))
    quantization = quantize_onnx(fp32_file, int8_file, reader, policy)
    int8 = {n: backend_model(task_processor, int8_file, n, 'cpu') for n in threads}
    folded = fastest_inference_form(copy.deepcopy(reference))
    data, _ = task_processor.create_input(image, input_shape)
    seconds = interleaved_latency(dict(pytorch_folded={n: folded for n in threads},
                                       onnxruntime_fp32=fp32, onnxruntime_int8=int8),
                                  data, rounds)
    hw = tuple(model_input(task_processor, preprocessor, image, input_shape).shape[-2:])
    row = OrderedDict(family=spec.title, backbone=peers.display_name(backbone),
                      input='{}x{}'.format(*hw),
                      params_m=sum(p.numel() for p in reference.parameters()) / 1e6)
    for n in threads:
        for variant in VARIANTS:
            row[f'{variant}_ms_{n}t'] = seconds[variant][n] * 1e3
        row[f'int8_vs_fp32_{n}t'] = seconds['onnxruntime_fp32'][n] / seconds[
            'onnxruntime_int8'][n]
        row[f'int8_vs_pytorch_{n}t'] = seconds['pytorch_folded'][n] / seconds[
            'onnxruntime_int8'][n]
    row['int8_layers'] = quantization['int8_layers']
    return row


def run_int8_benchmark(families: Sequence[str], backbones: Sequence[str],
                       threads: Sequence[int], rounds: int,
                       json_path: Optional[str] = None) -> Tuple[str, List[Dict]]:
    """:func:`benchmark_model` for every family and backbone it takes (PartialNet archs
    only where the family is not in the peers table); ``(header, rows)``, the rows written
    to ``json_path`` after every model."""
    require_mmdeploy()
    header = (f'# batch-1 latency of test_step, folded PyTorch vs onnxruntime fp32 vs '
              f'onnxruntime INT8 (QDQ, per-channel, {QuantizationPolicy()}); '
              f'{machine_description(torch.device("cpu"))}; median of {rounds} interleaved '
              f'rounds after 1 warm-up; random weights')
    rows = []
    for family in families:
        others = [b for b in backbones if b not in peers.PARTIALNET_ARCHS]
        if others and INT8_FAMILIES[family].peer_family is None:
            print(f'[int8] {family}: PartialNet archs only, not {others} (other backbones: '
                  f'{[f for f, v in INT8_FAMILIES.items() if v.peer_family]})')
        for backbone in backbones:
            if backbone in others and INT8_FAMILIES[family].peer_family is None:
                continue
            print(f'[int8] {family}: {peers.display_name(backbone)}', flush=True)
            with tempfile.TemporaryDirectory(prefix='partialnet-int8-bench-') as tmp:
                rows.append(benchmark_model(family, backbone, threads, rounds, tmp))
            write_json_report(json_path, header, rows)
    return header, rows


def format_int8_table(rows: List[Dict], threads: Sequence[int],
                      header: Optional[str] = None) -> str:
    """Rows as Markdown: per thread count, the three latencies (ms) and INT8's speed-ups."""
    columns = ['family', 'backbone', 'input']
    for n in threads:
        columns += [f'PyTorch {n}t', f'ORT fp32 {n}t', f'ORT INT8 {n}t',
                    f'INT8 vs fp32 {n}t', f'INT8 vs PyTorch {n}t']
    lines = []
    for row in rows:
        cells = [row['family'], row['backbone'], row['input']]
        for n in threads:
            cells += [f'{row[f"{v}_ms_{n}t"]:.1f}' for v in VARIANTS]
            cells += [f'{row[f"int8_vs_fp32_{n}t"]:.2f}x',
                      f'{row[f"int8_vs_pytorch_{n}t"]:.2f}x']
        lines.append(cells)
    return markdown_table(columns, lines, header)


def run(args) -> List[Dict]:
    """What ``tools/benchmark.py --int8`` does: the table printed, the rows returned."""
    header, rows = run_int8_benchmark(args.int8, args.backbones, args.int8_threads,
                                      args.runs, args.json)
    print(format_int8_table(rows, args.int8_threads, header))
    return rows
