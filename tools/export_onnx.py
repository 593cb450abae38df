"""Export a PartialNet backbone (its feature maps) or classifier (its logits) to ONNX.

    # backbone: one output per stage (feat0..feat3), any batch / height / width
    python tools/export_onnx.py partialnet_t0_backbone.onnx --arch t0 \\
        --checkpoint checkpoints/partialnet_t0_backbone.pth --fuse --verify
    # ImageNet classifier (logits), from its config and a converted checkpoint
    python tools/export_onnx.py partialnet_t2.onnx --config configs/partialnet_t2_imagenet.py \\
        --checkpoint checkpoints/partialnet_t2_in1k.pth --fuse --verify

Batch, height and width are dynamic: the iRPE bias of the self-attention stage depends on
the feature size, and its bucket indices are computed inside the graph from it, so one file
serves every input size (sides at least 32 px). ``--static`` fixes the shape to ``--shape``
instead. ``--fuse`` exports the folded inference form (``switch_to_deploy()``; the same
outputs, fewer nodes). ``--verify`` runs the file in onnxruntime at the export shape and at a
second one and prints the largest difference from PyTorch relative to the largest output.

Detection and segmentation configs export their backbone (the rest of such a model is
mmdeploy's business); classification (mmpretrain) configs export the whole classifier.
"""
import argparse
import warnings
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from partialnet_mm.analysis import (ARCH_MODEL_KINDS, build_arch_model, build_config_model,
                                    config_scope, find_backbones, load_config, parse_shape,
                                    switch_model_to_deploy)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a PartialNet backbone or classifier to ONNX',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
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


class TensorOutputs(nn.Module):
    """What is exported: a backbone's feature tuple, or a classifier's logits (mode='tensor')."""

    def __init__(self, model: nn.Module, is_classifier: bool):
        super().__init__()
        self.model = model
        self.is_classifier = is_classifier

    def forward(self, x: torch.Tensor):
        if self.is_classifier:
            return self.model(x, mode='tensor')
        return tuple(self.model(x))


def build_exported_module(args) -> Tuple[TensorOutputs, List[str]]:
    """The module to export (eval mode, fused if asked) and its output names."""
    if args.arch:
        model = build_arch_model(args.arch, args.kind)
        if args.checkpoint:
            from mmengine.runner import load_checkpoint
            load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
        is_classifier = args.kind == 'classifier'
    else:
        cfg = load_config(args.config)
        model = build_config_model(cfg, args.checkpoint)
        is_classifier = config_scope(cfg) == 'mmpretrain' and not args.backbone_only
        if not is_classifier:
            backbones = find_backbones(model)
            if not backbones:
                raise SystemExit(f'{args.config}: the model has no backbone to export')
            model = backbones[0]
    if args.fuse:
        switch_model_to_deploy(model, memory_format='contiguous')
    module = TensorOutputs(model, is_classifier).eval()
    names = ['logits'] if is_classifier else [f'feat{i}' for i in model.out_indices]
    return module, names


def export(module: TensorOutputs, output_names: Sequence[str], path: str,
           example: torch.Tensor, opset: int, dynamic: bool) -> None:
    """``torch.onnx.export`` (TorchScript exporter) with dynamic batch / height / width."""
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in output_names:
            dynamic_axes[name] = {0: 'batch'} if name == 'logits' else {
                0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    with warnings.catch_warnings(), torch.no_grad():
        # shape checks in Python are traced as constants; the graph itself is dynamic
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*dynamo=False.*')
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        torch.onnx.export(module, (example, ), path, dynamo=False, input_names=['input'],
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True)


def max_relative_error(module: nn.Module, path: str, inputs: torch.Tensor) -> float:
    """max |onnxruntime - PyTorch| / max |PyTorch| over all outputs for ``inputs``."""
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = module(inputs)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = session.run(None, {'input': inputs.numpy()})
    worst = 0.
    for ours, ref in zip(got, expected):
        ref = ref.float().numpy()
        assert ours.shape == ref.shape, (ours.shape, ref.shape)
        worst = max(worst, float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12)))
    return worst


def verification_shapes(batch: int, hw: Tuple[int, int], static: bool):
    """The export shape and, unless static, a second one (another batch, sides and aspect)."""
    shapes = [(batch, 3, *hw)]
    if not static:
        shapes.append((batch + 1, 3, hw[0] + 64, max(32, hw[1] - 32)))
    return shapes


def main(argv=None) -> Dict:
    args = parse_args(argv)
    hw = parse_shape(args.shape)
    module, names = build_exported_module(args)
    example = torch.randn(args.batch_size, 3, *hw)
    export(module, names, args.output, example, args.opset, dynamic=not args.static)
    print(f'[export_onnx] wrote {args.output}: input (batch, 3, height, width) -> '
          f'{", ".join(names)}; {"static" if args.static else "dynamic batch/height/width"}'
          f'{", fused" if args.fuse else ""}, opset {args.opset}')
    result = dict(output=args.output, output_names=names)
    if args.verify:
        errors = {}
        for shape in verification_shapes(args.batch_size, hw, args.static):
            errors[shape] = max_relative_error(module, args.output, torch.randn(*shape))
            print(f'[export_onnx] onnxruntime vs PyTorch at {shape}: max |diff| / max |ref| = '
                  f'{errors[shape]:.2e}')
        result['errors'] = errors
    return result


if __name__ == '__main__':
    main()
