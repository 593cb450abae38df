"""Parameters and FLOPs of PartialNet variants or whole models, via mmengine's analysis.

    # every variant's ImageNet classifier at 224 x 224 (the figures papers report)
    python tools/get_flops.py --arch t0 t1 t2 s m l
    # the backbone alone, at another size
    python tools/get_flops.py --arch t2 --kind backbone --shape 800 1280
    # a whole detector at its test scale (1280 x 800 for Mask R-CNN), next to mmdet's ResNet-50
    python tools/get_flops.py --config configs/mask_rcnn_partialnet_t2_coco.py \\
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py

FLOPs are counted by tracing the model with ``mmengine.analysis.FlopAnalyzer`` (fvcore's
counter): one multiply-add is one FLOP, convolutions / linear layers / matrix products / norms
are counted, element-wise activations are not. mmengine has no handle for
``scaled_dot_product_attention``, which PartialNet's last stage uses; this tool adds one (the
two attention products), and the ``attention`` column shows that part. Config models are
traced in their test-mode forward (``mode='tensor'``: backbone, neck and heads, no
post-processing), as mmdet's and mmseg's own ``get_flops.py`` do. ``--show-table`` prints the
per-module breakdown.
"""
import argparse
from typing import Dict, List

import torch
import torch.nn as nn

from partialnet_mm.analysis import (add_model_arguments, build_arch_model, build_config_model,
                                    config_scope, count_flops, default_input_shape,
                                    load_config, parse_shape, scope_of,
                                    synthetic_data_samples)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs of PartialNet variants or models from configs',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_model_arguments(parser, 'classifier', 'the ImageNet classifier')
    parser.add_argument('--show-table', action='store_true',
                        help='print the per-module FLOPs and parameters')
    args = parser.parse_args(argv)
    if not args.arch and not args.config:
        parser.error('give at least one --arch or --config')
    return args


class TensorForward(nn.Module):
    """A config model's test-mode network as ``module(images)`` (what is traced)."""

    def __init__(self, model: nn.Module, scope: str, hw):
        super().__init__()
        self.model, self.scope = model, scope
        self.data_samples = synthetic_data_samples(scope, 1, hw)

    def forward(self, images: torch.Tensor):
        with scope_of(self.scope):
            return self.model(images, self.data_samples, mode='tensor')


def measure(args) -> List[Dict]:
    shape = parse_shape(args.shape)
    rows = []
    for arch in args.arch:
        hw = shape or (224, 224)
        model = build_arch_model(arch, args.kind)
        traced = TensorForward(model, 'mmpretrain', hw) if args.kind == 'classifier' else model
        rows.append(dict(model=f'{arch} {args.kind}', input=hw,
                         **count_flops(traced, (torch.randn(1, 3, *hw), ))))
    for path in args.config:
        cfg = load_config(path)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        hw = shape or default_input_shape(cfg)
        model = build_config_model(cfg)
        traced = TensorForward(model, config_scope(cfg), hw)
        rows.append(dict(model=path, input=hw, **count_flops(traced, (torch.randn(1, 3, *hw), ))))
    return rows


def format_table(rows: List[Dict]) -> str:
    header = ['model', 'input (HxW)', 'params', 'FLOPs', 'attention FLOPs']
    cells = [header] + [[
        r['model'], f'{r["input"][0]}x{r["input"][1]}', f'{r["params"] / 1e6:.3f} M',
        f'{r["flops"] / 1e9:.3f} G', f'{r["attention_flops"] / 1e9:.4f} G'] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ['# FLOPs: multiply-adds (mmengine/fvcore convention), attention products included']
    for n, line in enumerate(cells):
        lines.append('| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) + ' |')
        if n == 0:
            lines.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    rows = measure(args)
    if args.show_table:
        from mmengine.analysis import flop_count_table
        for r in rows:
            print(f'\n## {r["model"]}\n' + flop_count_table(r['analyzer'], max_depth=4))
    print(format_table(rows))
    for r in rows:
        r.pop('analyzer')
    return rows


if __name__ == '__main__':
    main()
