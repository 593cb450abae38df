"""Export a PartialNet backbone (its feature maps) or classifier (its logits) to ONNX.

    # backbone: one output per stage (feat0..feat3), any batch / height / width
    python tools/export_onnx.py partialnet_t0_backbone.onnx --arch t0 \\
        --checkpoint checkpoints/partialnet_t0_backbone.pth --fuse --verify
    # ImageNet classifier (logits), from its config and a converted checkpoint
    python tools/export_onnx.py partialnet_t2.onnx --config configs/partialnet_t2_imagenet.py \\
        --checkpoint checkpoints/partialnet_t2_in1k.pth --fuse --verify

``--static`` fixes the shape to ``--shape``; ``--fuse`` exports the folded inference form (the
same outputs, fewer nodes); ``--verify`` runs the file in onnxruntime at the export shape and
at a second one and prints the largest difference from PyTorch relative to the largest
output. Detection and segmentation configs export their backbone.
"""
import argparse

from partialnet_mm.analysis.models import ARCH_MODEL_KINDS, parse_shape
from partialnet_mm.deploy.onnx import export_onnx


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('output', help='the .onnx file to write')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--arch', help='a PartialNet arch (t0 ... l)')
    source.add_argument('--config', help='a config file (also mmpretrain::..., mmdet::...)')
    parser.add_argument('--kind', choices=ARCH_MODEL_KINDS, default='backbone',
                        help='what --arch is exported as (default: backbone)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export only the backbone of a classification config')
    parser.add_argument('--checkpoint', help='weights (a converted checkpoint); without '
                        'them the export carries the initial weights')
    parser.add_argument('--fuse', action='store_true', help='export the fused (deploy) form')
    parser.add_argument('--shape', type=int, nargs='+', default=[224],
                        help='example input size, S or H W (default 224)')
    parser.add_argument('--batch-size', type=int, default=1, help='example batch size')
    parser.add_argument('--static', action='store_true',
                        help='fixed batch and input size instead of dynamic axes')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch at two input sizes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = export_onnx(args.output, args.arch, args.config, args.kind, args.checkpoint,
                         args.backbone_only, args.fuse, parse_shape(args.shape),
                         args.batch_size, args.static, args.opset, args.verify)
    print(f'[export_onnx] wrote {args.output}: input (batch, 3, height, width) -> '
          f'{", ".join(result["output_names"])}; '
          f'{"static" if args.static else "dynamic batch/height/width"}'
          f'{", fused" if args.fuse else ""}, opset {args.opset}')
    for shape, error in result.get('errors', {}).items():
        print(f'[export_onnx] onnxruntime vs PyTorch at {shape}: max |diff| / max |ref| = '
              f'{error:.2e}')
    return result


if __name__ == '__main__':
    main()
