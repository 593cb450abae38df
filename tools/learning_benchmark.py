"""Learning benchmarks: train each demo config on its embedded demo data, then evaluate.

    python tools/learning_benchmark.py                 # cls, then seg and det from it
    python tools/learning_benchmark.py det             # Mask R-CNN from random weights
    python tools/learning_benchmark.py det --backbone-from work_dirs/.../epoch_15.pth
    python tools/learning_benchmark.py cls --cfg-options train_cfg.max_epochs=2

Prints one table with the metrics, the targets, the training time and the machine, and
writes it to WORK_DIR/learning_benchmark.json. The exit status is 0 when every target is met.
The detection and segmentation demos start from the classification demo's backbone when cls
runs in the same call or --backbone-from names a classifier checkpoint (their time then
includes the pre-training); see partialnet_mm.tooling.learning_benchmark.
"""
import argparse
import os.path as osp

from partialnet_mm.analysis.report import machine_description
from partialnet_mm.tooling import learning_benchmark as lb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('tasks', nargs='*', choices=sorted(lb.TASKS) + [[]],
                        help='which benchmarks (default: all, in the order cls seg det rtmdet '
                        'rtmdet-ins)')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'learning_benchmark'),
                        help='each task trains in WORK_DIR/<task>')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides for every task (training and testing)')
    parser.add_argument('--data-root', help='(one task) use this existing demo set as it is')
    parser.add_argument('--backbone-from', help='classifier checkpoint (backbone.* keys) that '
                        'initialises the det/seg backbones')
    parser.add_argument('--from-scratch', action='store_true',
                        help='det/seg backbones start from random weights even after cls')
    args = parser.parse_args(argv)
    tasks = args.tasks or list(lb.TASKS)
    if args.data_root and len(tasks) != 1:
        parser.error('--data-root needs exactly one task')
    if args.backbone_from and args.from_scratch:
        parser.error('--backbone-from and --from-scratch exclude each other')
    records = lb.run_tasks(tasks, {t: osp.join(args.work_dir, t) for t in tasks},
                           {t: args.cfg_options for t in tasks},
                           {t: args.data_root for t in tasks if args.data_root},
                           args.backbone_from, args.from_scratch)
    table = lb.format_table(records, machine_description())
    print('\n' + '=' * 72 + '\n' + table + '\n' + '=' * 72)
    print(f'report: {lb.write_report(records, args.work_dir)}')
    if not all(rec['passed'] for rec in records):
        raise SystemExit(1)
    return records


if __name__ == '__main__':
    main()
