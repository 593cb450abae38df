"""Plot the peers benchmark: latency against parameters (or FLOPs), one marker per model.

    python tools/benchmark.py --peers mask_rcnn retinanet rtmdet fpn --json peers.json
    python tools/plot_benchmark.py peers.json docs/peers.png            # ms vs params
    python tools/plot_benchmark.py peers.json flops.png --x gflops --y backbone_neck_ms

See partialnet_mm.analysis.plot (matplotlib, which mmdet installs).
"""
import argparse

from partialnet_mm.analysis.plot import AXES, load_rows, plot_peers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('report', help='JSON written by tools/benchmark.py --peers --json')
    parser.add_argument('out', help='PNG to write')
    parser.add_argument('--x', choices=sorted(AXES), default='params_m')
    parser.add_argument('--y', choices=sorted(AXES), default='full_ms')
    args = parser.parse_args(argv)
    report = load_rows(args.report)
    print(plot_peers(report['rows'], args.out, args.x, args.y, report.get('header', '')))


if __name__ == '__main__':
    main()
