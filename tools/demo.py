"""The main job on the embedded demo data: Mask R-CNN with a PartialNet backbone, end to end.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--epochs N]

1. writes the synthetic COCO-format demo set to data/coco_demo (skipped when complete);
2. trains ``configs/demo/mask_rcnn_partialnet_t0_demo.py`` with ``tools/train.py``;
3. reloads the final checkpoint with ``tools/test.py`` and prints COCO bbox/segm mAP
   (mmdet's ``CocoMetric``, pycocotools).
"""
import argparse
import glob
import os.path as osp
import runpy
import sys
import time

from partialnet_mm.demo_data import make_coco_demo

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join('configs', 'demo', 'mask_rcnn_partialnet_t0_demo.py')


def run_tool(name, *argv):
    """``python tools/<name> argv...`` in this process; returns its ``main``'s result."""
    module = runpy.run_path(osp.join(ROOT, 'tools', name))
    return module['main']([str(a) for a in argv])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo_mask_rcnn'))
    parser.add_argument('--epochs', type=int, help="override the demo config's epochs")
    args = parser.parse_args(argv)

    start = time.time()
    if make_coco_demo():
        print('demo data written to data/coco_demo')
    options = ['train_cfg.val_interval=1000000']  # evaluated once, below, from the checkpoint
    if args.epochs:
        options += [f'train_cfg.max_epochs={args.epochs}']
    run_tool('train.py', args.config, '--work-dir', args.work_dir, '--cfg-options', *options)
    train_time = time.time() - start

    checkpoints = sorted(glob.glob(osp.join(args.work_dir, 'epoch_*.pth')),
                         key=lambda p: int(osp.basename(p)[6:-4]))
    if not checkpoints:
        sys.exit(f'no checkpoint was written to {args.work_dir}')
    metrics = run_tool('test.py', args.config, checkpoints[-1], '--work-dir', args.work_dir)
    print('\n' + '=' * 72)
    print(f'PartialNet Mask R-CNN demo: trained in {train_time / 60:.1f} min, total '
          f'{(time.time() - start) / 60:.1f} min')
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        print(f'  {key:<18} {metrics.get(key, float("nan")):.3f}')
    print(f'checkpoint: {checkpoints[-1]}')
    print(f'evaluate again: python tools/test.py {args.config} {checkpoints[-1]} '
          f'--show-dir show')
    print('=' * 72)
    return metrics


if __name__ == '__main__':
    main()
