"""Export a whole PartialNet model to ONNX through MMDeploy (onnxruntime), and check it.

Takes mmdeploy's own tools/deploy.py arguments; the deploy configs are in configs/deploy/:

    python tools/deploy.py configs/deploy/mmdet/instance-seg/instance-seg_onnxruntime_dynamic.py \\
        configs/mask_rcnn_partialnet_t0_coco.py work_dirs/mask_rcnn_t0/epoch_12.pth demo.jpg \\
        --work-dir work_dirs/mask_rcnn_t0_onnx --device cpu --test-img val1.jpg val2.jpg

mmdeploy's torch2onnx writes the graph (backbone folded); the file is then run in the backend
(onnxruntime) and compared with PyTorch on the test images (boxes, scores, labels and masks;
label maps; class scores) and timed against the fused PyTorch model. Only an export within
the tolerances becomes <work-dir>/end2end.onnx (else end2end.onnx.rejected, and the tool
fails); the figures go to <work-dir>/deploy_check.json.

--quantize int8 then quantizes the accepted export for onnxruntime's CPU provider (static QDQ,
per-channel weights) on --calib-images images of the config's own dataset, checks it against
PyTorch the same way (INT8 tolerances) and against the dataset metric of the config's test
set, and keeps it as <work-dir>/end2end.int8.onnx (else .rejected; figures in
<work-dir>/quantize_check.json):

    python tools/deploy.py configs/deploy/mmdet/detection/detection_onnxruntime_dynamic.py \\
        configs/demo/retinanet_partialnet_t0_demo.py CKPT val1.jpg --test-img val1.jpg val2.jpg \\
        --work-dir DIR --quantize int8 --calib-images 32 --threads 1 2
Needs mmdeploy: pip install -e ".[deploy]" (docs/mmdeploy.md; INT8: docs/deployment.md).
"""
import argparse
import json
import os

from mmengine.config import DictAction

from partialnet_mm.deploy.mmdeploy_export import deploy
from partialnet_mm.deploy.quantize import (FLOAT_LAYERS, OP_SETS, WEIGHT_BITS, QuantizationPolicy,
                                           quantize)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('deploy_cfg', help='deploy config (configs/deploy/...)')
    parser.add_argument('model_cfg', help='model config')
    parser.add_argument('checkpoint', help='model checkpoint (trained, not folded)')
    parser.add_argument('img', help='image the model is exported with')
    parser.add_argument('--test-img', nargs='+', default=None,
                        help='images onnxruntime and PyTorch are compared on (default: img)')
    parser.add_argument('--work-dir', default=os.getcwd(),
                        help='where end2end.onnx and deploy_check.json go (default: cwd)')
    parser.add_argument('--device', default='cpu', help='device of the export (default cpu)')
    parser.add_argument('--dump-info', action='store_true',
                        help="also write mmdeploy's SDK files (deploy.json, pipeline.json, "
                        'detail.json)')
    parser.add_argument('--timing-rounds', type=int, default=5,
                        help='interleaved latency rounds, onnxruntime vs fused PyTorch '
                        '(0: skip; default 5)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override model config settings (e.g. the dataset data_root)')
    parser.add_argument('--quantize', choices=['int8'], help='also an INT8 model, checked')
    parser.add_argument('--calib-images', type=int, default=32,
                        help='--quantize: calibration images (default 32)')
    parser.add_argument('--calib-split', choices=['train', 'val', 'test'], default='train',
                        help="--quantize: the config's dataloader they come from")
    parser.add_argument('--int8-ops', choices=OP_SETS, default=QuantizationPolicy.ops,
                        help='--quantize: convolutions and matrix products only, or all')
    parser.add_argument('--keep-float', nargs='*', choices=FLOAT_LAYERS,
                        default=list(QuantizationPolicy.keep_float),
                        help='--quantize: layers left in float')
    parser.add_argument('--int8-weight-bits', choices=list(WEIGHT_BITS), default='auto',
                        help='--quantize: 8 where this CPU has VNNI, 7 where it lacks it '
                        '(auto), or as given for the CPU the model will run on')
    parser.add_argument('--threads', type=int, nargs='+', default=None,
                        help="--quantize: latency at these thread counts (default: torch's)")
    args = parser.parse_args(argv)
    if not args.quantize and (args.threads or args.calib_images != 32
                              or args.int8_weight_bits != 'auto'):
        parser.error('--threads, --calib-images and --int8-weight-bits belong to --quantize '
                     'int8')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.quantize:
        report = quantize(args.deploy_cfg, args.model_cfg, args.checkpoint, args.img,
                          args.work_dir, args.device, args.test_img, args.calib_images,
                          args.calib_split, args.cfg_options,
                          QuantizationPolicy(args.int8_ops, args.keep_float,
                                             reduce_range=WEIGHT_BITS[args.int8_weight_bits]),
                          timing_rounds=args.timing_rounds, threads=args.threads,
                          dump_info=args.dump_info)
        print(f'[deploy] INT8: wrote {", ".join(report["files"])}; vs PyTorch: '
              f'{json.dumps(report["agreement"])}; metric drop {report["metric_drop"]}; '
              f'latency (s): {json.dumps(report.get("latency", {}).get("seconds"))}')
        return report
    report = deploy(args.deploy_cfg, args.model_cfg, args.checkpoint, args.img, args.work_dir,
                    args.device, args.test_img, args.dump_info,
                    timing_rounds=args.timing_rounds, cfg_options=args.cfg_options)
    print(f'[deploy] wrote {", ".join(report["files"])} ({report["task"]}); '
          f'{report["backend"]} vs PyTorch on {len(report["test_images"])} image(s): '
          f'{json.dumps(report["agreement"])}')
    if 'latency' in report:
        lat = report['latency']
        print(f'[deploy] latency (median of {lat["rounds"]} interleaved test_step runs, '
              f'{lat["machine"]}): {report["backend"]} {lat[report["backend"]] * 1e3:.1f} ms, '
              f'fused PyTorch {lat["pytorch_fused"] * 1e3:.1f} ms '
              f'({lat["pytorch_fused_over_backend"]:.2f}x)')
    return report


if __name__ == '__main__':
    main()
