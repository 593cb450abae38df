"""DPConv end to end: a short demo training, the learned splits, the exported model's speed.

    python tools/dpconv_benchmark.py [--work-dir DIR] [--epochs N] [--images-per-class N]
                                     [--size PX] [--batch N] [--threads N] [--rounds N]

1. writes a small ImageNet-layout demo set under WORK_DIR/data (``partialnet_mm.demo_data``);
2. trains ``configs/demo/partialnet_t0_imagenet_dpconv_demo.py`` on it (tools/train.py; the
   gates are frozen for the config's warm-up epoch, then learn);
3. exports the last checkpoint with tools/export_dpconv.py and prints each layer's learned
   split;
4. times three classifiers on the same random batch, in eval mode, interleaved round by round
   (so that load from other processes hits all of them alike): the exported plain model, the
   fixed ``n_div = 4`` PartialNet-T0 and, for reference, the DPConv model before export.
   Reports images/s (median over rounds) and the torch thread count.
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_dpconv_demo.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/dpconv_benchmark')
    parser.add_argument('--epochs', type=int, default=12,
                        help='training epochs (the demo schedule; 1 is warm-up)')
    parser.add_argument('--images-per-class', type=int, default=100,
                        help='training images per demo class (4 classes)')
    parser.add_argument('--size', type=int, default=224, help='timing input size (px)')
    parser.add_argument('--batch', type=int, default=16, help='timing batch size')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch threads for timing (default: torch\'s default)')
    parser.add_argument('--rounds', type=int, default=7, help='timing rounds')
    parser.add_argument('--iters', type=int, default=3, help='forward passes per round')
    return parser.parse_args(argv)


def run_tool(name, argv):
    import runpy
    return runpy.run_path(osp.join(ROOT, 'tools', name))['main']([str(a) for a in argv])


def train(args) -> str:
    from partialnet_mm.demo_data import make_imagenet_demo
    data_root = osp.join(args.work_dir, 'data', 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=args.images_per_class,
                       num_val_per_class=max(args.images_per_class // 4, 2))
    work = osp.join(args.work_dir, 'train')
    options = [f'{loader}.dataset.data_root={data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += [f'train_cfg.max_epochs={args.epochs}', f'train_cfg.val_interval={args.epochs}',
                'randomness.seed=0']
    run_tool('train.py', [CONFIG, '--work-dir', work, '--cfg-options', *options])
    return osp.join(work, f'epoch_{args.epochs}.pth')


def build_classifier(model_cfg: dict):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    return model.eval()


def time_models(models: dict, args) -> dict:
    """images/s of each model, median over interleaved rounds."""
    x = torch.randn(args.batch, 3, args.size, args.size)
    speeds = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():  # warm-up (allocations, kernel selection)
            model(x, mode='tensor')
        for _ in range(args.rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for _ in range(args.iters):
                    model(x, mode='tensor')
                speeds[name].append(args.batch * args.iters / (time.perf_counter() - start))
    return {name: (statistics.median(v), min(v), max(v)) for name, v in speeds.items()}


def conv3x3_macs(classifier, size: int) -> int:
    """Multiply-accumulates of the blocks' 3x3 convolutions (the part the split decides)
    for one ``size`` x ``size`` image, as the model computes them in eval mode."""
    backbone, total = classifier.backbone, 0
    for i, stage in enumerate(backbone.stages):
        side = size // backbone.stem_stride // backbone.merge_stride**i
        for block in stage.blocks:
            c = block.spatial_mixing.conv_channels
            total += c * c * 9 * side * side
    return total


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    import partialnet_mm  # noqa: F401  (registers the models)
    checkpoint = train(args)
    exported = osp.join(args.work_dir, 'exported', 'partialnet_t0_dpconv_plain.pth')
    exported_cfg = osp.join(args.work_dir, 'exported', 'partialnet_t0_dpconv_plain.py')
    os.makedirs(osp.dirname(exported), exist_ok=True)
    info = run_tool('export_dpconv.py', [checkpoint, exported, '--config', CONFIG,
                                         '--out-config', exported_cfg])

    cfg = Config.fromfile(CONFIG)
    plain_cfg = Config.fromfile(exported_cfg)
    fixed_cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo',
                                         'partialnet_t0_imagenet_demo.py'))
    models = {}
    for name, c, weights in (('exported (learned splits)', plain_cfg, exported),
                             ('fixed n_div=4', fixed_cfg, None),
                             ('DPConv before export', cfg, checkpoint)):
        model = build_classifier(c.model)
        if weights is not None:
            from mmengine.runner import load_checkpoint
            load_checkpoint(model, weights, map_location='cpu', strict=True, logger='silent')
        models[name] = model

    torch.set_num_threads(args.threads)
    speeds = time_models(models, args)

    print('\nlearned splits (convolved / channels), budget b =',
          cfg.model.backbone.dpconv.budget)
    for layer, (c, d) in info['splits'].items():
        print(f'  {layer:6s} {c:4d} / {d:<4d} ratio 1/{d // c}')
    mean = sum(c / d for c, d in info['splits'].values()) / len(info['splits'])
    print(f'  mean convolved fraction {mean:.3f} (fixed n_div=4: 0.250)')
    print(f'\nspeed: batch {args.batch} x 3 x {args.size} x {args.size}, eval, '
          f'{torch.get_num_threads()} torch threads, median of {args.rounds} interleaved '
          f'rounds x {args.iters} passes (min-max)')
    for name, (median, low, high) in speeds.items():
        macs = conv3x3_macs(models[name], args.size) / 1e6
        print(f'  {name:28s} {median:8.1f} images/s  ({low:.1f}-{high:.1f})   3x3-conv '
              f'MACs {macs:.1f} M/image')
    return dict(splits=info['splits'], speeds=speeds, threads=torch.get_num_threads())


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
