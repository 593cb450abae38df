"""Parameters and FLOPs of PartialNet variants or whole models, via mmengine's analysis.

    # every variant's ImageNet classifier at 224 x 224 (the figures papers report)
    python tools/get_flops.py --arch t0 t1 t2 s m l
    # the backbone alone, at another size
    python tools/get_flops.py --arch t2 --kind backbone --shape 800 1280
    # a whole detector at its test scale (1280 x 800 for Mask R-CNN), next to mmdet's ResNet-50
    python tools/get_flops.py --config configs/mask_rcnn_partialnet_t2_coco.py \\
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py

One multiply-add is one FLOP (fvcore/mmengine convention); the attention products of
PartialNet's last stage, which mmengine alone would skip, are counted and shown in their own
column (partialnet_mm.analysis.flops). ``--show-table`` prints the per-module breakdown.
"""
import argparse

from mmengine.analysis.print_helper import complexity_stats_table

from partialnet_mm.analysis.flops import format_table, measure
from partialnet_mm.analysis.models import add_model_arguments, parse_shape


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, 'classifier', 'the ImageNet classifier')
    parser.add_argument('--show-table', action='store_true',
                        help='print the per-module FLOPs and parameters')
    args = parser.parse_args(argv)
    if not args.arch and not args.config:
        parser.error('give at least one --arch or --config')
    return args


def main(argv=None):
    args = parse_args(argv)
    rows = measure(args.arch, args.config, args.kind, parse_shape(args.shape), args.cfg_options)
    if args.show_table:
        for r in rows:
            print(f'\n## {r["model"]}\n' + complexity_stats_table(r['analyzer'], max_depth=4))
    print(format_table(rows))
    for r in rows:
        r.pop('analyzer')
    return rows


if __name__ == '__main__':
    main()
