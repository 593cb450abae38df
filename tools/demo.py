"""The main job on the embedded demo data: Mask R-CNN with a PartialNet backbone, end to end.

    python tools/demo.py [--work-dir DIR] [--cfg-options train_cfg.max_epochs=2 ...]

1. writes the synthetic COCO-format demo set to data/coco_demo (skipped when complete);
2. trains ``configs/demo/mask_rcnn_partialnet_t0_demo.py`` with ``tools/train.py``;
3. reloads the final checkpoint with ``tools/test.py`` and prints COCO bbox/segm mAP
   (mmdet's ``CocoMetric``, pycocotools).

It is the ``det`` task of ``tools/learning_benchmark.py``, which also runs the segmentation
and classification demos.
"""
import argparse
import os.path as osp
import runpy

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo_mask_rcnn'))
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides for train.py and test.py')
    args = parser.parse_args(argv)
    bench = runpy.run_path(osp.join(ROOT, 'tools', 'learning_benchmark.py'))
    record = bench['run_task']('det', args.work_dir, args.cfg_options)
    print('\n' + '=' * 72)
    print(bench['format_table']([record], bench['machine']()))
    print(f'checkpoint: {record["checkpoint"]}')
    print(f'evaluate again: python tools/test.py {record["config"]} {record["checkpoint"]} '
          f'--show-dir show')
    print('=' * 72)
    return record


if __name__ == '__main__':
    main()
