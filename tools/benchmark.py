"""Speed and memory of PartialNet backbones, whole models and training start-up, side by side.

    # inference: backbones, naive (the authors' formulation) vs fused, one table
    python tools/benchmark.py --arch t0 t2 --compare-naive --batch-size 16 --threads 2
    python tools/benchmark.py --config configs/mask_rcnn_partialnet_t2_coco.py --device cuda
    # training step (forward, backward, AdamW) and peak memory: naive vs ours (vs ours+cp)
    python tools/benchmark.py --train --with-cp --arch t2 --shape 800 1280 --batch-size 2
    # against the authors' own code (a clone of github.com/haiduo/PartialNet), same weights
    python tools/benchmark.py --train --arch t0 t2 --kind classifier --authors-code ../PartialNet
    # whole models, PartialNet / ResNet / FasterNet backbones; --int8: also onnxruntime fp32, INT8
    python tools/benchmark.py --peers mask_rcnn rtmdet --backbones t0 r50 fasternet_t0 --runs 3
    python tools/benchmark.py --int8 retinanet fpn classifier --backbones t0 t2 r50 --runs 5
    python tools/benchmark.py --startup /data/coco_scale --seg-label-check  # vs mmdet's own

Forms of one model (--peers, --int8: all models of a family) are timed in interleaved rounds;
see partialnet_mm.tooling.benchmark, .peers, .int8_benchmark and .startup.
"""
import argparse

import torch

from partialnet_mm.analysis.models import add_model_arguments, parse_shape
from partialnet_mm.analysis.report import write_json_report
from partialnet_mm.models import PartialNet
from partialnet_mm.tooling import benchmark as bench
from partialnet_mm.tooling import int8_benchmark, startup
from partialnet_mm.tooling import peers
from partialnet_mm.tooling.authors_code import load_authors_partialnet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, 'backbone', 'the backbone alone')
    parser.add_argument('--checkpoint', nargs='+', default=None,
                        help='one checkpoint per --config (for --mode predict)')
    parser.add_argument('--mode', choices=['tensor', 'predict'], default='tensor',
                        help='config models at inference: network only, or with '
                        'post-processing')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda[:i] (default: cuda if available, else cpu)')
    parser.add_argument('--batch-size', type=int, default=16, help='batch size')
    forms = parser.add_mutually_exclusive_group()
    forms.add_argument('--fuse', action='store_true', help='inference: the fused form only')
    forms.add_argument('--compare-naive', action='store_true',
                       help='inference: the naive and the fused form side by side')
    forms.add_argument('--train', action='store_true',
                       help='time training steps: the naive form vs the training path')
    parser.add_argument('--with-cp', action='store_true',
                        help='--train: also the training path with activation checkpointing')
    parser.add_argument('--no-memory', action='store_true', help='--train: skip peak memory')
    parser.add_argument('--memory-format', choices=PartialNet.deploy_memory_formats,
                        default='auto', help='layout of the fused models (default: auto, '
                        'channels-last on the CPU)')
    parser.add_argument('--amp', action='store_true',
                        help='autocast (float16 on CUDA, bfloat16 on CPU)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (torch.set_num_threads; default: torch\'s)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed passes per form')
    parser.add_argument('--runs', type=int, default=10, help='timed passes per form')
    parser.add_argument('--no-latency', action='store_true', help='skip the batch-1 latency')
    peers.add_arguments(parser)
    int8_benchmark.add_arguments(parser)
    startup.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.peers or args.int8:  # their own rules and defaults
        return (int8_benchmark if args.int8 else peers).check_arguments(parser, args)
    if not (args.arch or args.config or startup.requested(args)):
        parser.error('give at least one --arch or --config (or --startup, --seg-label-check)')
    if args.checkpoint is not None and len(args.checkpoint) != len(args.config):
        parser.error(f'--checkpoint needs one file per --config ({len(args.config)})')
    if args.batch_size < 1 or args.runs < 1 or args.warmup < 0 or (args.with_cp
                                                                     and not args.train):
        parser.error('--batch-size and --runs must be positive, --warmup non-negative, '
                     '--with-cp goes with --train')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.int8:
        return int8_benchmark.run(args)
    if startup.requested(args):
        return startup.run_benchmark(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    if args.peers:
        header, rows = peers.run_peers(args.peers, args.backbones, args.warmup, args.runs,
                                       args.batch_size, args.train_runs, not args.no_flops,
                                       not args.no_train, not args.no_memory, args.cfg_options,
                                       parse_shape(args.shape), args.json)
        print(peers.format_peers_table(rows, header))
        return rows
    authors = load_authors_partialnet(args.authors_code) if args.authors_code else None
    sources = bench.model_sources(args.arch, args.kind, args.config, args.cfg_options,
                                  args.checkpoint, parse_shape(args.shape), authors)
    first = ['authors'] if authors else []
    if args.train:
        forms = first + ['naive', 'ours'] + (['ours+cp'] if args.with_cp else [])
        rows = bench.benchmark_training(sources, forms, args.batch_size, device, args.warmup,
                                        args.runs, args.amp, memory=not args.no_memory)
        what = 'training step'
    else:
        forms = first + (['naive', 'fused'] if args.compare_naive else
                         ['fused'] if args.fuse else ['naive'])
        rows = bench.benchmark_inference(sources, forms, args.batch_size, device, args.warmup,
                                         args.runs, args.amp, args.memory_format, args.mode,
                                         latency=not args.no_latency)
        what = f'inference (fused memory format: {args.memory_format})'
    header = bench.run_header(device, args.runs, args.warmup, args.amp, what)
    print(bench.format_table(rows, header))
    write_json_report(args.json, header, rows)
    return rows


if __name__ == '__main__':
    main()
