"""Plot the peers benchmark: latency against parameters (or FLOPs), one marker per model.

    python tools/benchmark.py --peers mask_rcnn retinanet rtmdet fpn --json peers.json
    python tools/plot_benchmark.py peers.json docs/peers.png            # ms vs params
    python tools/plot_benchmark.py peers.json flops.png --x gflops --y backbone_neck_ms
    python tools/plot_benchmark.py peers.json --table      # a README table: params / ms
    python tools/plot_benchmark.py peers.json --table --cells params_m gflops full_ms

See partialnet_mm.tooling.plot (matplotlib, which mmdet installs).
"""
import argparse

from partialnet_mm.tooling.plot import AXES, load_rows, peers_matrix, plot_peers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('report', help='JSON written by tools/benchmark.py --peers --json')
    parser.add_argument('out', nargs='?', help='PNG to write')
    parser.add_argument('--x', choices=sorted(AXES), default='params_m')
    parser.add_argument('--y', choices=sorted(AXES), default='full_ms')
    parser.add_argument('--table', action='store_true',
                        help='print one Markdown table: a row per backbone, a column per '
                        'family, cells "params / --y" (or --cells)')
    parser.add_argument('--cells', nargs='+', choices=sorted(AXES), default=None,
                        help='--table: the measures of each cell, in order')
    args = parser.parse_args(argv)
    if not args.out and not args.table:
        parser.error('give an output PNG, or --table')
    report = load_rows(args.report)
    if args.table:
        print(report.get('header', ''))
        print(peers_matrix(report['rows'], args.cells or ('params_m', args.y)))
    if args.out:
        print(plot_peers(report['rows'], args.out, args.x, args.y, report.get('header', '')))


if __name__ == '__main__':
    main()
