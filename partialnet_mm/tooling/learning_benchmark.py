"""Learning benchmarks: train each demo config on its embedded demo data, then evaluate.

For each task: write the demo set (skipped when complete), train the demo config (validation
only at the end), reload the final checkpoint and compare its metrics with the targets. As
the real configs start from ImageNet weights, the detection and segmentation demos start
from the classification demo's backbone when ``cls`` runs first in the same call or
``backbone_from`` names a classifier checkpoint; their reported time then includes the
pre-training time. ``tools/demo.py`` (the README's main job) is the ``cls`` + ``det`` run.
"""
import json
import os
import os.path as osp
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

from ..analysis.report import machine_description
from ..apis.test import test
from ..apis.train import train
from ..runner import data_root_options, parse_cfg_options
from ..runner.config import project_file
from .demo_data import DEMO_ROOTS, MAKERS


class Task(NamedTuple):
    config: str  # relative to the project root
    data: str  # key of partialnet_mm.tooling.demo_data.MAKERS
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
    # RTMDet and RTMDet-Ins alone start from random weights: 6 epochs reached bbox mAP
    # 0.153, and 0.172 / segm 0.184 (docs/benchmarks.md); the targets sit below that.
    # (Mask R-CNN's 0.5 is reached from the classification demo's backbone, in 8 epochs.)
    'rtmdet': Task('configs/demo/rtmdet_partialnet_t0_demo.py', 'coco',
                   {'coco/bbox_mAP': 0.12}, 'annotations/instances_val2017.json'),
    'rtmdet-ins': Task('configs/demo/rtmdet-ins_partialnet_t0_demo.py', 'coco',
                       {'coco/bbox_mAP': 0.14, 'coco/segm_mAP': 0.15},
                       'annotations/instances_val2017.json'),
}
# shown beside the targets
EXTRA_METRICS = ('coco/bbox_mAP_50', 'coco/segm_mAP_50', 'aAcc', 'mAcc')
Options = Optional[Union[dict, Sequence[str]]]


def last_checkpoint(work_dir: str) -> str:
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise RuntimeError(f'training wrote no checkpoint to {work_dir}')
    with open(marker) as f:
        return f.read().strip()


def run_task(name: str, work_dir: str, cfg_options: Options = None,
             data_root: Optional[str] = None, backbone_from: Optional[str] = None,
             pretrain_minutes: float = 0.) -> dict:
    """Train and evaluate one task; returns its record for the table.

    ``data_root``: an existing demo set to use as it is; by default the set is written to
    (or found complete at) its default place. ``backbone_from``: a classifier checkpoint
    whose ``backbone.*`` weights initialise the backbone (its training took
    ``pretrain_minutes``, added to the reported time).
    """
    task = TASKS[name]
    options = {}
    if data_root is None:
        if MAKERS[task.data]():
            print(f'demo data written to {DEMO_ROOTS[task.data]}')
    else:
        ann = osp.join(data_root, task.evaluator_ann) if task.evaluator_ann else None
        options.update(parse_cfg_options(data_root_options(data_root, ann)))
    if backbone_from:
        if not osp.isfile(backbone_from):
            raise FileNotFoundError(f'backbone_from: {backbone_from} not found')
        options['model.backbone.init_cfg'] = dict(  # replaces the demo configs' None
            _delete_=True, type='PartialNetPretrained', checkpoint=backbone_from, prefix='backbone.')
    options.update(parse_cfg_options(cfg_options))
    config = project_file(task.config)
    start = time.time()
    # validated once, below, from the final checkpoint (not during training)
    train(config, work_dir, cfg_options=dict(options, **{'train_cfg.val_interval': 10**9}))
    train_min = (time.time() - start) / 60 + pretrain_minutes
    checkpoint = last_checkpoint(work_dir)
    metrics = test(config, checkpoint, work_dir, cfg_options=options)
    results = {key: float(metrics[key]) for key in list(task.targets) + list(EXTRA_METRICS)
               if key in metrics}
    return dict(task=name, config=task.config, checkpoint=checkpoint,
                backbone_from=backbone_from, train_minutes=round(train_min, 2),
                metrics=results, targets=task.targets,
                passed=all(results.get(k, float('-inf')) >= v
                           for k, v in task.targets.items()))


def run_tasks(tasks: Sequence[str], work_dirs: Dict[str, str],
              cfg_options: Optional[Dict[str, Options]] = None,
              data_roots: Optional[Dict[str, str]] = None,
              backbone_from: Optional[str] = None, from_scratch: bool = False) -> List[dict]:
    """Run ``tasks`` in the order of :data:`TASKS`; returns their records.

    Unless ``from_scratch``, the det/seg backbones start from ``backbone_from`` or, when it
    is not given and ``cls`` is among the tasks, from the checkpoint that ``cls`` trains (its
    minutes are then added to theirs); otherwise from what their config says (random
    weights for the demo configs). ``work_dirs``, ``cfg_options`` and ``data_roots`` map a
    task to its work dir, its overrides and an existing demo set to use as it is.
    """
    if backbone_from and from_scratch:
        raise ValueError('backbone_from and from_scratch exclude each other')
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f'unknown tasks {unknown}; choose from {sorted(TASKS)}')
    cfg_options, data_roots = cfg_options or {}, data_roots or {}
    records, pretrain_min = [], 0.
    for name in [t for t in TASKS if t in tasks]:  # cls first: it pre-trains
        pretrained = name != 'cls' and not from_scratch
        records.append(run_task(name, work_dirs[name], cfg_options.get(name),
                                data_roots.get(name), backbone_from if pretrained else None,
                                pretrain_min if pretrained else 0.))
        if name == 'cls' and not backbone_from and not from_scratch:
            backbone_from = records[-1]['checkpoint']
            pretrain_min = records[-1]['train_minutes']
    return records


def format_table(records: List[dict], machine: str) -> str:
    """The records as a table: metric, value, target, met, training minutes."""
    lines = [f'Learning benchmark on {machine}',
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


def write_report(records: List[dict], work_dir: str) -> str:
    """``work_dir/learning_benchmark.json`` with the records and the machine; its path."""
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'learning_benchmark.json')
    with open(path, 'w') as f:
        json.dump(dict(machine=machine_description(), records=records), f, indent=2)
    return path
