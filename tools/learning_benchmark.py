"""Learning benchmarks: train each demo config on its embedded demo data, then evaluate.

    python tools/learning_benchmark.py                 # cls, then seg and det from it
    python tools/learning_benchmark.py det             # Mask R-CNN only (= tools/demo.py)
    python tools/learning_benchmark.py det --backbone-from work_dirs/.../epoch_15.pth
    python tools/learning_benchmark.py cls --cfg-options train_cfg.max_epochs=2

For each task: write the demo set (skipped when complete), train the demo config with
``tools/train.py`` (validation only at the end), reload the final checkpoint with
``tools/test.py`` and compare its metrics with the targets below. Prints one table with the
metrics, the targets, the training time and the machine, and writes it to
``WORK_DIR/learning_benchmark.json``. The exit status is 0 when every target is met.

Like the real configs, whose backbones start from ImageNet weights, the detection and
segmentation demos start from the classification demo's backbone when ``cls`` runs first in
the same call (it always runs first) or ``--backbone-from`` names a classifier checkpoint;
``--from-scratch`` starts them from random weights. Their reported time then includes the
pre-training time.

Figures are not a unit test: they take minutes to tens of minutes of CPU time each.
"""
import argparse
import json
import os
import os.path as osp
import runpy
import time
from typing import Dict, List, NamedTuple, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class Task(NamedTuple):
    config: str  # relative to the project root
    data: str  # key of partialnet_mm.demo_data.MAKERS
    targets: Dict[str, float]  # metric -> minimum, in the unit the library logs it
    evaluator_ann: Optional[str] = None  # annotation file of a COCO evaluator, under the root


TASKS = {  # in the order they run
    # mmseg's IoUMetric and mmpretrain's Accuracy log percentages
    'cls': Task('configs/demo/partialnet_t0_imagenet_demo.py', 'imagenet',
                {'accuracy/top1': 90.0}),
    'seg': Task('configs/demo/fpn_partialnet_t0_demo.py', 'ade20k', {'mIoU': 60.0}),
    'det': Task('configs/demo/mask_rcnn_partialnet_t0_demo.py', 'coco',
                {'coco/bbox_mAP': 0.5, 'coco/segm_mAP': 0.5},
                'annotations/instances_val2017.json'),
}
# shown beside the targets
EXTRA_METRICS = ('coco/bbox_mAP_50', 'coco/segm_mAP_50', 'aAcc', 'mAcc')


def run_tool(name: str, *argv):
    """``python tools/<name> argv...`` in this process; returns its ``main``'s result."""
    module = runpy.run_path(osp.join(ROOT, 'tools', name))
    return module['main']([str(a) for a in argv])


def machine() -> str:
    import torch
    from partialnet_mm.analysis import cpu_name
    cpu = cpu_name()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'
    return (f'{device}; {cpu}, {os.cpu_count()} cores, torch {torch.__version__} '
            f'with {torch.get_num_threads()} threads')


def last_checkpoint(work_dir: str) -> str:
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise SystemExit(f'training wrote no checkpoint to {work_dir}')
    with open(marker) as f:
        return f.read().strip()


def run_task(name: str, work_dir: str, cfg_options: List[str],
             data_root: Optional[str] = None, backbone_from: Optional[str] = None,
             pretrain_minutes: float = 0.) -> dict:
    """Train and evaluate one task; returns its record for the table.

    ``data_root``: an existing demo set to use as it is; by default the set is written to
    (or found complete at) its default place. ``backbone_from``: a classifier checkpoint
    whose ``backbone.*`` weights initialise the backbone (its training took
    ``pretrain_minutes``, added to the reported time).
    """
    from partialnet_mm.demo_data import DEMO_ROOTS, MAKERS
    from partialnet_mm.runtime import data_root_options
    task = TASKS[name]
    if data_root is None:
        if MAKERS[task.data]():
            print(f'demo data written to {DEMO_ROOTS[task.data]}')
    else:
        ann = osp.join(data_root, task.evaluator_ann) if task.evaluator_ann else None
        cfg_options = data_root_options(data_root, ann) + list(cfg_options)
    if backbone_from:
        if not osp.isfile(backbone_from):
            raise SystemExit(f'--backbone-from: {backbone_from} not found')
        cfg_options = [f'model.backbone.init_cfg.checkpoint={backbone_from}',
                       'model.backbone.init_cfg.prefix=backbone.'] + list(cfg_options)
    config = osp.join(ROOT, task.config)
    # validated once, below, from the final checkpoint (not during training)
    options = ['train_cfg.val_interval=1000000000'] + list(cfg_options)
    start = time.time()
    run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options', *options)
    train_min = (time.time() - start) / 60 + pretrain_minutes
    checkpoint = last_checkpoint(work_dir)
    metrics = run_tool('test.py', config, checkpoint, '--work-dir', work_dir,
                       *(['--cfg-options', *cfg_options] if cfg_options else []))
    results = {key: float(metrics[key]) for key in list(task.targets) + list(EXTRA_METRICS)
               if key in metrics}
    return dict(task=name, config=task.config, checkpoint=checkpoint,
                backbone_from=backbone_from, train_minutes=round(train_min, 2),
                metrics=results, targets=task.targets,
                passed=all(results.get(k, float('-inf')) >= v
                           for k, v in task.targets.items()))


def run_tasks(tasks: List[str], work_dirs: Dict[str, str],
              cfg_options: Optional[Dict[str, List[str]]] = None,
              data_roots: Optional[Dict[str, str]] = None,
              backbone_from: Optional[str] = None, from_scratch: bool = False) -> List[dict]:
    """Run ``tasks`` in the order of ``TASKS``; returns their records.

    Unless ``from_scratch`` (random weights, even where ``checkpoints/*_in1k.pth`` exists),
    the det/seg backbones start from ``backbone_from`` or, when it is not given and ``cls``
    is among the tasks, from the checkpoint that ``cls`` trains (its minutes are then added
    to theirs). ``work_dirs``, ``cfg_options`` and ``data_roots`` map a task to its work
    dir, its overrides and an existing demo set to use as it is (see ``run_task``).
    """
    if backbone_from and from_scratch:
        raise ValueError('backbone_from and from_scratch exclude each other')
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f'unknown tasks {unknown}; choose from {sorted(TASKS)}')
    cfg_options, data_roots = cfg_options or {}, data_roots or {}
    records, pretrain_min = [], 0.
    for name in [t for t in TASKS if t in tasks]:  # cls first: it pre-trains
        dense = name != 'cls'
        options = list(cfg_options.get(name, []))
        if dense and from_scratch:
            options = ['model.backbone.init_cfg=None'] + options
        pretrained = dense and not from_scratch
        records.append(run_task(name, work_dirs[name], options, data_roots.get(name),
                                backbone_from if pretrained else None,
                                pretrain_min if pretrained else 0.))
        if name == 'cls' and not backbone_from:
            backbone_from = records[-1]['checkpoint']
            pretrain_min = records[-1]['train_minutes']
    return records


def format_table(records: List[dict], machine_info: str) -> str:
    lines = [f'Learning benchmark on {machine_info}',
             f'{"task":<5} {"metric":<18} {"value":>8} {"target":>8}  {"ok":<3} '
             f'{"train min":>9}']
    for rec in records:
        for i, (key, value) in enumerate(rec['metrics'].items()):
            target = rec['targets'].get(key)
            ok = '' if target is None else ('yes' if value >= target else 'NO')
            lines.append(f'{rec["task"] if i == 0 else "":<5} {key:<18} {value:>8.3f} '
                         f'{"" if target is None else f"{target:.3f}":>8}  {ok:<3} '
                         f'{rec["train_minutes"] if i == 0 else "":>9}')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('tasks', nargs='*', choices=sorted(TASKS) + [[]],
                        help='which benchmarks (default: all, in the order cls seg det)')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'learning_benchmark'),
                        help='each task trains in WORK_DIR/<task>')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides passed to train.py and test.py')
    parser.add_argument('--data-root', help='(one task) use this existing demo set as it is')
    parser.add_argument('--backbone-from', help='classifier checkpoint (backbone.* keys) that '
                        'initialises the det/seg backbones')
    parser.add_argument('--from-scratch', action='store_true',
                        help='det/seg backbones start from random weights')
    args = parser.parse_args(argv)
    tasks = args.tasks or list(TASKS)
    if args.data_root and len(tasks) != 1:
        parser.error('--data-root needs exactly one task')
    if args.backbone_from and args.from_scratch:
        parser.error('--backbone-from and --from-scratch exclude each other')
    records = run_tasks(tasks, {t: osp.join(args.work_dir, t) for t in tasks},
                        {t: args.cfg_options for t in tasks},
                        {t: args.data_root for t in tasks if args.data_root},
                        args.backbone_from, args.from_scratch)
    table = format_table(records, machine())
    print('\n' + '=' * 72 + '\n' + table + '\n' + '=' * 72)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'learning_benchmark.json'), 'w') as f:
        json.dump(dict(machine=machine(), records=records), f, indent=2)
    if not all(rec['passed'] for rec in records):
        raise SystemExit(1)
    return records


if __name__ == '__main__':
    main()
