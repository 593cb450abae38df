"""Inference speed of PartialNet backbones or whole models: throughput and latency.

    # backbones alone, naive (split/concat, BNs unfused) vs fused, side by side
    python tools/benchmark.py --arch t0 t2 --compare-naive --batch-size 16 --threads 2
    # the ImageNet classifiers (backbone + PartialNetClsHead), fused only
    python tools/benchmark.py --arch t0 t1 t2 --kind classifier --fuse
    # whole detectors from configs, PartialNet-T2 vs mmdet's ResNet-50 Mask R-CNN, on a GPU
    python tools/benchmark.py --config configs/mask_rcnn_partialnet_t2_coco.py \\
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py --device cuda --batch-size 4

Throughput is images/s at ``--batch-size``, latency ms per image at batch 1; each is the
median over ``--runs`` timed forward passes after ``--warmup`` untimed ones. The variants of
a model (naive, fused) are timed in interleaved rounds (every round times each once, in
rotating order), so a load change on a shared machine affects them alike and their ratio
stays fair; the models of one run are timed one after another. CUDA timings synchronise the
device around every pass.

Variants: ``naive`` is the model as trained (split and concatenate, every BN separate);
``fused`` is after ``switch_to_deploy()`` (``--fuse``); ``--compare-naive`` times both and
prints the speed-up. Only PartialNet backbones are fused; other models (e.g. mmdet's ResNet)
get no ``fused`` row.

Config models run their test-mode network (``--mode tensor``: backbone, neck and heads
without post-processing, the part papers time) or the full prediction (``--mode predict``,
with post-processing; it depends on the weights: pass ``--checkpoint``). Inputs are random,
at ``--shape`` or the config's test scale (see ``partialnet_mm.analysis.default_input_shape``).
"""
import argparse
import copy
import statistics
import time
from typing import Dict, List, Optional

import torch

from partialnet_mm import PartialNet
from partialnet_mm.analysis import (add_model_arguments, build_arch_model, build_config_model,
                                    config_scope, cpu_name, default_input_shape, find_backbones,
                                    load_config, parse_shape, scope_of,
                                    switch_model_to_deploy, synthetic_data_samples)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Throughput and latency of PartialNet backbones or whole models',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_model_arguments(parser, 'backbone', 'the backbone alone')
    parser.add_argument('--checkpoint', nargs='+', default=None,
                        help='one checkpoint per --config (for --mode predict)')
    parser.add_argument('--mode', choices=['tensor', 'predict'], default='tensor',
                        help='config models: network only, or with post-processing')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda[:i] (default: cuda if available, else cpu)')
    parser.add_argument('--batch-size', type=int, default=16, help='throughput batch size')
    variants = parser.add_mutually_exclusive_group()
    variants.add_argument('--fuse', action='store_true',
                          help='time the fused (switch_to_deploy) model only')
    variants.add_argument('--compare-naive', action='store_true',
                          help='time the naive and the fused model side by side')
    parser.add_argument('--memory-format', choices=PartialNet.deploy_memory_formats,
                        default='auto', help='layout of the fused models (default: auto, '
                        'channels-last on the CPU); see PartialNet.switch_to_deploy')
    parser.add_argument('--amp', action='store_true',
                        help='autocast (float16 on CUDA, bfloat16 on CPU)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (torch.set_num_threads; default: torch\'s)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed passes per model')
    parser.add_argument('--runs', type=int, default=10, help='timed passes per model')
    parser.add_argument('--no-latency', action='store_true', help='skip the batch-1 latency')
    args = parser.parse_args(argv)
    if not args.arch and not args.config:
        parser.error('give at least one --arch or --config')
    if args.checkpoint is not None and len(args.checkpoint) != len(args.config):
        parser.error(f'--checkpoint needs one file per --config ({len(args.config)})')
    if args.batch_size < 1 or args.runs < 1 or args.warmup < 0:
        parser.error('--batch-size and --runs must be positive, --warmup non-negative')
    return args


class Target:
    """One model variant to time: how to build its inputs and run one forward pass."""

    def __init__(self, name: str, variant: str, model, scope: Optional[str], hw, mode: str):
        self.name, self.variant, self.model = name, variant, model
        self.scope, self.hw, self.mode = scope, hw, mode
        self.params = sum(p.numel() for p in model.parameters())
        self.is_backbone = scope is None  # a bare backbone: model(images)

    def inputs(self, batch: int, device) -> tuple:
        images = torch.randn(batch, 3, *self.hw, device=device)
        if self.is_backbone:
            return (images, )
        return images, synthetic_data_samples(self.scope, batch, self.hw)

    def forward(self, inputs: tuple):
        if self.is_backbone:
            return self.model(*inputs)
        with scope_of(self.scope):
            return self.model(*inputs, mode=self.mode)


def build_targets(args, device) -> List[Target]:
    """Every (model, variant) of the run, on ``device``, in eval mode."""
    shape = parse_shape(args.shape)
    variants = ['naive', 'fused'] if args.compare_naive else \
        ['fused'] if args.fuse else ['naive']
    sources = []  # (name, scope or None for a bare backbone, input size, build)
    for arch in args.arch:
        scope = 'mmpretrain' if args.kind == 'classifier' else None
        sources.append((f'{arch} {args.kind}', scope, shape or (224, 224),
                        lambda a=arch: build_arch_model(a, args.kind)))
    for i, path in enumerate(args.config):
        cfg = load_config(path)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        ckpt = args.checkpoint[i] if args.checkpoint else None
        sources.append((path, config_scope(cfg), shape or default_input_shape(cfg),
                        lambda c=cfg, k=ckpt: build_config_model(c, k)))
    targets = []
    for name, scope, hw, build in sources:
        naive = build().to(device)
        fusable = all(hasattr(b, 'switch_to_deploy') for b in find_backbones(naive))
        for variant in variants:
            model = naive
            if variant == 'fused':
                if not fusable:
                    print(f'[benchmark] {name}: its backbone has no deploy form; '
                          f'{"skipping the fused row" if "naive" in variants else "timed as is"}')
                    if 'naive' in variants:
                        continue
                else:
                    model = switch_model_to_deploy(copy.deepcopy(naive), args.memory_format)
            targets.append(Target(name, variant, model, scope, hw, args.mode))
    return targets


def time_interleaved(targets: List[Target], batch: int, device, warmup: int, runs: int,
                     amp: bool) -> List[float]:
    """Median seconds per forward pass of each target, timed in interleaved rounds.

    Meant for the variants of one model: they share the machine's state (load, caches, the
    allocator's free memory) round by round, so their ratio is fair.
    """
    cuda = device.type == 'cuda'
    autocast = (torch.autocast(device.type, dtype=torch.float16 if cuda else torch.bfloat16)
                if amp else torch.autocast(device.type, enabled=False))
    inputs = [t.inputs(batch, device) for t in targets]
    times: List[List[float]] = [[] for _ in targets]

    def run(i: int) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        targets[i].forward(inputs[i])
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    with torch.no_grad(), autocast:
        for i in range(len(targets)):
            for _ in range(warmup):
                run(i)
        for r in range(runs):
            order = list(range(len(targets)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                times[i].append(run(i))
    return [statistics.median(t) for t in times]


def machine_description(device) -> str:
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)}, torch {torch.__version__}'
    cpu = cpu_name()
    capability = torch.backends.cpu.get_cpu_capability()
    return (f'CPU {cpu} ({capability}), torch {torch.__version__}, '
            f'threads={torch.get_num_threads()}')


def format_table(rows: List[Dict], header: str) -> str:
    columns = [('model', 'model'), ('variant', 'variant'), ('params (M)', 'params_m'),
               ('input', 'input'), ('batch', 'batch'), ('img/s', 'throughput'),
               ('ms (b1)', 'latency_ms'), ('speed-up', 'speedup')]

    def cell(row, key):
        value = row.get(key)
        if value is None:
            return '-'
        if key == 'params_m':
            return f'{value:.2f}'
        if key in ('throughput', 'latency_ms'):
            return f'{value:.1f}' if value >= 10 else f'{value:.2f}'
        if key == 'speedup':
            return f'{value:.2f}x'
        return str(value)

    cells = [[title for title, _ in columns]] + [[cell(r, k) for _, k in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = [header]
    for n, line in enumerate(cells):
        lines.append('| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) + ' |')
        if n == 0:
            lines.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    targets = build_targets(args, device)
    # The variants of each model (naive, fused) are interleaved; the models are timed one
    # after another (a large model's allocations would otherwise disturb a small one's).
    throughput, latency = [], []
    for name in dict.fromkeys(t.name for t in targets):
        group = [t for t in targets if t.name == name]
        throughput += time_interleaved(group, args.batch_size, device, args.warmup,
                                       args.runs, args.amp)
        latency += [None] * len(group) if args.no_latency else time_interleaved(
            group, 1, device, args.warmup, args.runs, args.amp)
    rows = []
    for i, t in enumerate(targets):
        rows.append(dict(model=t.name, variant=t.variant, params_m=t.params / 1e6,
                         input=f'{t.hw[0]}x{t.hw[1]}', batch=args.batch_size,
                         throughput=args.batch_size / throughput[i],
                         latency_ms=None if latency[i] is None else latency[i] * 1e3))
    naive = {r['model']: r for r in rows if r['variant'] == 'naive'}
    for r in rows:
        if r['variant'] == 'fused' and r['model'] in naive:
            r['speedup'] = r['throughput'] / naive[r['model']]['throughput']
    header = (f'# {machine_description(device)}; median of {args.runs} runs after '
              f'{args.warmup} warm-up, interleaved; {"AMP" if args.amp else "fp32"}; '
              f'fused memory format: {args.memory_format}')
    print(format_table(rows, header))
    return rows


if __name__ == '__main__':
    main()
