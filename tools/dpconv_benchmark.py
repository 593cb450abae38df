"""DPConv end to end: a short demo training, the learned splits, the exported model's speed.

    python tools/dpconv_benchmark.py [--work-dir DIR] [--epochs N] [--images-per-class N]
                                     [--size PX] [--batch N] [--threads N] [--rounds N]

Trains the classification DPConv demo on a fresh demo set, exports it, prints the learned
splits, then times the exported classifier, the fixed n_div = 4 PartialNet-T0 and the DPConv
model before export on the same batch, interleaved round by round
(partialnet_mm.tooling.dpconv_benchmark).
"""
import argparse

from partialnet_mm.tooling.dpconv_benchmark import run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/dpconv_benchmark')
    parser.add_argument('--epochs', type=int, default=12,
                        help='training epochs (the demo schedule; 1 is warm-up)')
    parser.add_argument('--images-per-class', type=int, default=100,
                        help='training images per demo class (4 classes)')
    parser.add_argument('--size', type=int, default=224, help='timing input size (px)')
    parser.add_argument('--batch', type=int, default=16, help='timing batch size')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads for timing (default: torch\'s default)')
    parser.add_argument('--rounds', type=int, default=7, help='timing rounds')
    parser.add_argument('--iters', type=int, default=3, help='forward passes per round')
    args = parser.parse_args(argv)
    result = run(args.work_dir, args.epochs, args.images_per_class, args.size, args.batch,
                 args.threads, args.rounds, args.iters)
    splits = result['info']['splits']
    print('\nlearned splits (convolved / channels):')
    for layer, (c, d) in splits.items():
        print(f'  {layer:6s} {c:4d} / {d:<4d} ratio 1/{d // c}')
    mean = sum(c / d for c, d in splits.values()) / len(splits)
    print(f'  mean convolved fraction {mean:.3f} (fixed n_div=4: 0.250)')
    print(f'\nspeed: batch {args.batch} x 3 x {args.size} x {args.size}, eval, '
          f'{result["threads"]} torch threads, median of {args.rounds} interleaved rounds x '
          f'{args.iters} passes (min-max)')
    for name, (median, low, high) in result['speeds'].items():
        print(f'  {name:28s} {median:8.1f} images/s  ({low:.1f}-{high:.1f})   3x3-conv '
              f'MACs {result["macs"][name] / 1e6:.1f} M/image')
    return result


if __name__ == '__main__':
    main()
