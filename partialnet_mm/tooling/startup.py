"""What a training run costs before its first iteration at COCO scale: ours against mmdet's own.

:func:`make_coco_scale_set` writes a dataset of COCO train2017's size in COCO's layout
(118,287 images, about 860k instances with polygon masks, COCO's 80 categories; val2017's
5,000 images beside it), the images hard links to a few real JPEGs, so the annotation files
are what costs. :func:`measure_startup` then times one-iteration training runs of a shipped
config in fresh processes, ``tools/train.py`` (ours) against mmdet's own ``tools/train.py``,
in interleaved rounds, and reads each run's peak resident memory: in one process, and in two
ranks (``torchrun`` on the CPU). ``tools/benchmark.py --startup`` runs it.
"""
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from mmdet.datasets import CocoDataset

COCO_TRAIN = dict(images=118287, instances=858706)
COCO_VAL = dict(images=5000, instances=36781)
IMAGE_SIZE = (480, 640)  # height, width of every (hard-linked) image
SOURCE_IMAGES = 8


def coco_categories() -> List[dict]:
    """COCO's 80 categories with their ids (mmdet's class names, ids 1..90 with gaps)."""
    gaps = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    ids = [i for i in range(1, 91) if i not in gaps]
    return [dict(id=i, name=name, supercategory='object')
            for i, name in zip(ids, CocoDataset.METAINFO['classes'])]


def _polygon(rng: np.random.Generator, box) -> List[float]:
    """A star-shaped polygon inside ``box`` (x, y, w, h) with COCO's number of vertices
    (12-40) and two decimals, as COCO's files write them."""
    x, y, w, h = box
    n = int(rng.integers(12, 41))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radius = rng.uniform(0.6, 1.0, n)
    xs = x + w / 2 + np.cos(angles) * radius * w / 2
    ys = y + h / 2 + np.sin(angles) * radius * h / 2
    return [round(float(v), 2) for v in np.stack([xs, ys], 1).reshape(-1)]


def _write_split(root: str, split: str, counts: dict, sources: Sequence[str],
                 categories: List[dict], seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = IMAGE_SIZE
    folder = osp.join(root, f'{split}2017')
    os.makedirs(folder, exist_ok=True)
    per_image = rng.multinomial(counts['instances'],
                                np.full(counts['images'], 1 / counts['images']))
    images, annotations = [], []
    cat_ids = [c['id'] for c in categories]
    for idx in range(counts['images']):
        image_id = idx + 1
        name = f'{image_id:012d}.jpg'
        target = osp.join(folder, name)
        if not osp.exists(target):
            os.link(sources[idx % len(sources)], target)
        images.append(dict(id=image_id, file_name=name, height=height, width=width))
        for _ in range(per_image[idx]):
            w, h = rng.uniform(8, width / 2), rng.uniform(8, height / 2)
            box = [round(float(rng.uniform(0, width - w)), 2),
                   round(float(rng.uniform(0, height - h)), 2), round(float(w), 2),
                   round(float(h), 2)]
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=int(cat_ids[rng.integers(len(cat_ids))]),
                segmentation=[_polygon(rng, box)], area=round(box[2] * box[3] * 0.7, 2),
                bbox=box, iscrowd=0))
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    path = osp.join(root, 'annotations', f'instances_{split}2017.json')
    with open(path + '.part', 'w') as f:
        json.dump(dict(info=dict(description='partialnet-mm COCO-scale timing set'),
                       images=images, annotations=annotations, categories=categories), f)
    os.replace(path + '.part', path)


def make_coco_scale_set(root: str, train: Optional[dict] = None, val: Optional[dict] = None,
                        seed: int = 0) -> str:
    """COCO train2017/val2017-sized annotation files in COCO's layout under ``root``
    (``annotations/instances_{train,val}2017.json``, ``{train,val}2017/``), unless the same
    set is complete there; returns ``root``. ``train``/``val``: ``dict(images=, instances=)``
    (default COCO's). Image files are hard links to :data:`SOURCE_IMAGES` generated JPEGs of
    :data:`IMAGE_SIZE`."""
    splits = dict(train=train or COCO_TRAIN, val=val or COCO_VAL)
    marker = osp.join(root, 'DONE.json')
    params = dict(splits=splits, seed=seed, image_size=list(IMAGE_SIZE))
    if osp.isfile(marker):
        with open(marker) as f:
            if json.load(f) == params:
                return root
    if osp.exists(root):
        shutil.rmtree(root)
    sources_dir = osp.join(root, 'sources')
    os.makedirs(sources_dir)
    rng = np.random.default_rng(seed)
    sources = []
    for i in range(SOURCE_IMAGES):
        noise = rng.integers(0, 256, (IMAGE_SIZE[0] // 8, IMAGE_SIZE[1] // 8, 3), np.uint8)
        image = cv2.resize(noise, IMAGE_SIZE[::-1], interpolation=cv2.INTER_CUBIC)
        sources.append(osp.join(sources_dir, f'{i}.jpg'))
        if not cv2.imwrite(sources[-1], image):
            raise OSError(f'could not write {sources[-1]}')
    categories = coco_categories()
    for n, (split, counts) in enumerate(splits.items()):
        _write_split(root, split, counts, sources, categories, seed + n)
    with open(marker, 'w') as f:
        json.dump(params, f)
    return root


def _start_marker_time(proc, start: float, marker: str, log: List[str]) -> Optional[float]:
    """Read ``proc``'s output to the end; seconds from ``start`` to the first line holding
    ``marker`` (None if none did)."""
    seen = None
    for line in proc.stdout:
        log.append(line)
        if seen is None and marker in line:
            seen = time.perf_counter() - start
    return seen


def timed_run(argv: Sequence[str], cwd: str, env: dict, marker: str) -> Dict[str, float]:
    """Run ``argv``; its wall time, the time until it printed ``marker`` and the peak
    resident memory of its largest process (MiB; the process and the ones it waited for)."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log: List[str] = []
    marker_s = _start_marker_time(proc, start, marker, log)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or marker_s is None:
        raise RuntimeError(f'{" ".join(argv)} failed (exit {proc.returncode}):\n'
                           + ''.join(log[-60:]))
    return dict(wall_s=wall, to_training_s=marker_s, peak_rss_mib=usage.ru_maxrss / 1024)
