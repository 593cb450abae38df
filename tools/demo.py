"""The main job on the embedded demo data: Mask R-CNN with a PartialNet backbone, end to end.

    python tools/demo.py [--work-dir DIR] [--from-scratch] [--data-root DIR] [--cfg-options ...]

1. writes the synthetic demo sets to data/ (skipped when complete);
2. pre-trains the PartialNet-T0 backbone on the ImageNet-layout demo set (the classification
   demo), as the real configs start from ImageNet weights; ``--from-scratch`` skips this;
3. trains ``configs/demo/mask_rcnn_partialnet_t0_demo.py`` from that backbone;
4. reloads the final checkpoint and prints COCO bbox/segm mAP (mmdet's ``CocoMetric``).

These are the ``cls`` and ``det`` tasks of ``tools/learning_benchmark.py``; ``--cfg-options``
apply to the detector.
"""
import argparse
import os.path as osp

from partialnet_mm.analysis.report import machine_description
from partialnet_mm.tooling import learning_benchmark as lb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo_mask_rcnn'))
    parser.add_argument('--from-scratch', action='store_true',
                        help='train the detector from a randomly initialised backbone')
    parser.add_argument('--data-root', help='an existing COCO-layout demo set for the '
                        'detector, used as it is (default: data/coco_demo, written if needed)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides for the detector (training and testing)')
    args = parser.parse_args(argv)
    records = lb.run_tasks(
        ['det'] if args.from_scratch else ['cls', 'det'],
        dict(cls=osp.join(args.work_dir, 'pretrain'), det=args.work_dir),
        dict(det=args.cfg_options), dict(det=args.data_root) if args.data_root else None,
        from_scratch=args.from_scratch)
    record = records[-1]
    print('\n' + '=' * 72)
    print(lb.format_table(records, machine_description()))
    if not args.from_scratch:
        print('(det train min includes the backbone pre-training)')
    print(f'checkpoint: {record["checkpoint"]}')
    print(f'evaluate again: python tools/test.py {record["config"]} {record["checkpoint"]} '
          f'--show-dir show')
    print('=' * 72)
    return record


if __name__ == '__main__':
    main()
