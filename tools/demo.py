"""The main job on the embedded demo data: Mask R-CNN with a PartialNet backbone, end to end.

    python tools/demo.py [--work-dir DIR] [--from-scratch] [--data-root DIR] [--cfg-options ...]

1. writes the synthetic demo sets to data/ (skipped when complete);
2. pre-trains the PartialNet-T0 backbone on the ImageNet-layout demo set (the classification
   demo, about 5 minutes on 2 CPU cores), as the real configs start from ImageNet weights;
   ``--from-scratch`` skips this;
3. trains ``configs/demo/mask_rcnn_partialnet_t0_demo.py`` from that backbone with
   ``tools/train.py``;
4. reloads the final checkpoint with ``tools/test.py`` and prints COCO bbox/segm mAP
   (mmdet's ``CocoMetric``, pycocotools).

These are the ``cls`` and ``det`` tasks of ``tools/learning_benchmark.py``, which also runs
the segmentation demo. ``--cfg-options`` apply to the detector.
"""
import argparse
import os.path as osp
import runpy

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo_mask_rcnn'))
    parser.add_argument('--from-scratch', action='store_true',
                        help='train the detector from a randomly initialised backbone')
    parser.add_argument('--data-root', help='an existing COCO-layout demo set for the '
                        'detector, used as it is (default: data/coco_demo, written if needed)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides for the detector (train.py and test.py)')
    args = parser.parse_args(argv)
    bench = runpy.run_path(osp.join(ROOT, 'tools', 'learning_benchmark.py'))
    records = bench['run_tasks'](
        ['det'] if args.from_scratch else ['cls', 'det'],
        dict(cls=osp.join(args.work_dir, 'pretrain'), det=args.work_dir),
        dict(det=args.cfg_options), dict(det=args.data_root) if args.data_root else None,
        from_scratch=args.from_scratch)
    record = records[-1]
    print('\n' + '=' * 72)
    print(bench['format_table'](records, bench['machine']()))
    if not args.from_scratch:
        print('(det train min includes the backbone pre-training)')
    print(f'checkpoint: {record["checkpoint"]}')
    print(f'evaluate again: python tools/test.py {record["config"]} {record["checkpoint"]} '
          f'--show-dir show')
    print('=' * 72)
    return record


if __name__ == '__main__':
    main()
