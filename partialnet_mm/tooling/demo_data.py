"""Small, deterministic demo datasets in the layouts mmdet, mmseg and mmpretrain read natively.

Scenes are textured backgrounds with coloured, textured shapes of several categories and
scales that partly occlude each other. The same scene generator feeds

* :func:`make_coco_demo`: COCO instance segmentation (``annotations/instances_{split}2017.json``,
  ``{split}2017/*.jpg``), polygon masks of the *visible* part of each object;
* :func:`make_ade20k_demo`: ADE20K layout (``images/{training,validation}/*.jpg``,
  ``annotations/{training,validation}/*.png``), label 0 = "other" (ignored, as in ADE20K);
* :func:`make_imagenet_demo`: ImageNet folder layout (``{train,val}/<class>/*.jpg``).

A set is complete when its ``DONE.json`` marker (written last) matches the generator's
version and parameters and every file it lists exists; anything else is deleted and
regenerated, never half-used.
"""
import json
import math
import os
import os.path as osp
import shutil
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

GENERATOR_VERSION = 2
SHAPES = ('circle', 'triangle', 'rectangle', 'star')
MARKER = 'DONE.json'

DEMO_ROOTS = dict(coco='data/coco_demo', ade20k='data/ade20k_demo',
                  imagenet='data/imagenet_demo')


# ---------------------------------------------------------------------------- scene synthesis
def _texture(rng: np.random.Generator, height: int, width: int,
             base: Optional[np.ndarray] = None, contrast: float = 1.) -> np.ndarray:
    """A random texture: colour gradient, stripes or checks, and fine noise (uint8 BGR).

    ``contrast`` scales the pattern and the noise (objects are painted with a milder
    texture than the background, so their outline is what identifies them).
    """
    base = rng.uniform(30, 225, size=3) if base is None else base
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    proj = xx * math.cos(angle) + yy * math.sin(angle)
    kind = rng.integers(3)
    if kind == 0:  # stripes
        pattern = np.sin(proj / rng.uniform(3, 12)) * rng.uniform(10, 35)
    elif kind == 1:  # checks
        cell = rng.uniform(6, 20)
        pattern = (((xx // cell) + (yy // cell)) % 2 - 0.5) * rng.uniform(15, 40)
    else:  # smooth gradient
        pattern = (proj / max(height, width) - 0.5) * rng.uniform(30, 80)
    tint = rng.uniform(-1, 1, size=3) * 0.4 + 1
    img = base[None, None, :] + contrast * pattern[..., None] * tint[None, None, :]
    img += rng.normal(0, contrast * rng.uniform(3, 10), size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, behind: np.ndarray,
                        min_difference: float = 80.) -> np.ndarray:
    """A random colour at least ``min_difference`` away (in one channel) from ``behind``."""
    for _ in range(32):
        colour = rng.uniform(20, 235, size=3)
        if np.abs(colour - behind).max() >= min_difference:
            return colour
    return np.where(behind < 128, 235., 20.)  # the far end of every channel


def _shape_polygon(rng: np.random.Generator, shape: str, center: Tuple[float, float],
                   size: float) -> np.ndarray:
    """Vertices (N, 2) of a shape of the given category, randomly rotated and stretched."""
    theta = rng.uniform(0, 2 * math.pi)
    if shape == 'circle':
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        aspect = rng.uniform(0.85, 1.15)
        pts = np.stack([np.cos(t) * aspect, np.sin(t) / aspect], 1) * size / 2
    elif shape == 'triangle':
        t = theta + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-.2, .2, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * size / 2
    elif shape == 'rectangle':
        aspect = rng.uniform(0.45, 0.9)
        w, h = size / 2, size / 2 * aspect
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    elif shape == 'star':
        t = theta + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5)) * size / 2
        pts = np.stack([np.cos(t) * radii, np.sin(t) * radii], 1)
    else:
        raise ValueError(f'unknown shape {shape!r}')
    if shape in ('circle', 'rectangle'):
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        pts = pts @ rot.T
    return pts + np.asarray(center)[None, :]


def _has_hole(mask: np.ndarray) -> bool:
    _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0, :, 3] >= 0).any())


def synth_scene(rng: np.random.Generator, height: int, width: int,
                num_objects: Tuple[int, int] = (2, 6), size_range: Tuple[float, float] = (
                    0.12, 0.45), min_visible: float = 0.45,
                shapes: Sequence[str] = SHAPES, object_contrast: float = 0.35,
                background_contrast: float = 1., horizon_prob: float = 0.5,
                margin: float = 0.3) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One image and its objects as (category index, visible mask) pairs, back to front.

    Objects are placed one by one; a placement is rejected if it would leave any object with
    less than ``min_visible`` of its area visible or with a hole in its visible part (so
    each visible part is exactly a set of polygons). Each object's colour differs clearly
    from the mean of what it covers; its texture is ``object_contrast`` times as strong as
    the background's, whose own pattern is scaled by ``background_contrast``. With
    probability ``horizon_prob`` the background has two regions split by a horizon. Object
    centres keep ``margin`` times the object size from the border (0.5: fully inside).
    """
    img = _texture(rng, height, width, contrast=background_contrast)
    if rng.random() < horizon_prob:  # a second background region: a horizon at random height
        horizon = int(rng.uniform(0.3, 0.7) * height)
        img[horizon:] = _texture(rng, height - horizon, width, contrast=background_contrast)
    objects: List[Tuple[int, np.ndarray]] = []  # (category, full mask), back to front
    target = int(rng.integers(num_objects[0], num_objects[1] + 1))
    short = min(height, width)
    for _ in range(target * 8):
        if len(objects) == target:
            break
        cat = int(rng.integers(len(shapes)))
        size = rng.uniform(*size_range) * short
        center = (rng.uniform(size * margin, width - size * margin),
                  rng.uniform(size * margin, height - size * margin))
        poly = _shape_polygon(rng, shapes[cat], center, size)
        full = np.zeros((height, width), np.uint8)
        cv2.fillPoly(full, [np.round(poly).astype(np.int32)], 1)
        if full.sum() < 64:
            continue
        candidate = objects + [(cat, full)]
        if all(_visible_ok(m, candidate[i + 1:], min_visible)
               for i, (_, m) in enumerate(candidate)):
            inside = full.astype(bool)
            colour = _contrasting_colour(rng, img[inside].mean(0))  # vs. what it covers
            paint = _texture(rng, height, width, base=colour, contrast=object_contrast)
            img[inside] = paint[inside]
            objects.append((cat, full))
    result = []
    for i, (cat, full) in enumerate(objects):
        visible = full.copy()
        for _, later in objects[i + 1:]:
            visible[later.astype(bool)] = 0
        result.append((cat, visible))
    return img, result


def _visible_ok(mask: np.ndarray, later: Sequence[tuple], min_visible: float) -> bool:
    visible = mask.copy()
    for _, other in later:
        visible[other.astype(bool)] = 0
    return visible.sum() >= min_visible * mask.sum() and not _has_hole(visible)


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons ([x1, y1, x2, y2, ...] per part) of a hole-free binary mask."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for contour in contours:
        if len(contour) >= 3:
            polys.append([float(v) + 0.5 for v in contour.reshape(-1)])
    return polys


# ---------------------------------------------------------------------------- completeness
def _is_complete(root: str, params: dict) -> bool:
    marker = osp.join(root, MARKER)
    if not osp.isfile(marker):
        return False
    try:
        with open(marker) as f:
            done = json.load(f)
    except (OSError, ValueError):
        return False
    if done.get('version') != GENERATOR_VERSION or done.get('params') != params:
        return False
    return all(osp.isfile(osp.join(root, p)) for p in done.get('files', []))


# Detection and segmentation scenes: several overlapping shapes of varied size, some cut by
# the border, on backgrounds textured at half the full pattern contrast and without a second
# region (a horizon's long straight edge competes with the outlines that define the classes;
# at full contrast the segmentation demo reached 48 mIoU where the target is 60).
SCENE = dict(background_contrast=0.5, horizon_prob=0.)
# Segmentation scenes hold more and larger shapes (3-7 at 0.2-0.5 of the short side instead
# of 2-6 at 0.12-0.45): a label map is mostly background, and with the detection scenes the
# segmentation demo learned the shape classes slowly (600 iterations: 52.9 mIoU; 250
# iterations into a 1500-iteration schedule: 34.5 mIoU there, 43.8 with these scenes).
SEGMENTATION_SCENE = dict(SCENE, num_objects=(3, 7), size_range=(0.2, 0.5))


def _scene_params(scene: dict) -> dict:
    """``scene`` as it is recorded (JSON) in the marker file."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in scene.items()}


def _prepare(root: str, params: dict, force: bool) -> bool:
    """True if the set must be (re)generated; clears an incomplete or stale one."""
    if not force and _is_complete(root, params):
        return False
    if osp.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    return True


def _finish(root: str, params: dict, files: List[str]) -> None:
    tmp = osp.join(root, MARKER + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(dict(version=GENERATOR_VERSION, params=params, files=files), f)
    os.replace(tmp, osp.join(root, MARKER))


def _write_jpg(path: str, img: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise OSError(f'could not write {path}')


# ---------------------------------------------------------------------------- COCO
# COCO category ids that the shapes stand in for when a set must be read with COCO's own 80
# classes (the shipped configs, whose metainfo is mmdet's COCO classes).
COCO_STAND_INS = (1, 3, 17, 18)  # person, car, cat, dog
_COCO_ID_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def coco_categories() -> List[dict]:
    """COCO's 80 categories as its annotation files list them: ids 1..90 with COCO's gaps,
    named as mmdet's ``CocoDataset`` names its classes."""
    from mmdet.datasets import CocoDataset
    ids = [i for i in range(1, 91) if i not in _COCO_ID_GAPS]
    return [dict(id=i, name=name, supercategory='object')
            for i, name in zip(ids, CocoDataset.METAINFO['classes'])]


def make_coco_demo(root: str = DEMO_ROOTS['coco'], num_train: int = 500, num_val: int = 50,
                   image_size: Tuple[int, int] = (256, 256), seed: int = 0,
                   force: bool = False, coco_classes: bool = False) -> bool:
    """COCO instance segmentation set in COCO's layout. Returns True if it was (re)generated.

    ``coco_classes``: the annotation files list COCO's 80 categories (:func:`coco_categories`)
    and the shapes are instances of :data:`COCO_STAND_INS`, so the shipped COCO configs read
    the set as it is; by default the categories are the shapes (ids 1.., the demo configs'
    classes).
    """
    if coco_classes:
        categories = coco_categories()
        by_id = {c['id']: c for c in categories}
        shape_categories = [by_id[i] for i in COCO_STAND_INS]
    else:
        categories = shape_categories = [dict(id=i + 1, name=name, supercategory='shape')
                                         for i, name in enumerate(SHAPES)]
    params = dict(num_train=num_train, num_val=num_val, image_size=list(image_size),
                  scene=_scene_params(SCENE), seed=seed, categories=list(SHAPES))
    if coco_classes:
        params['coco_classes'] = list(COCO_STAND_INS)
    if not _prepare(root, params, force):
        return False
    height, width = image_size
    files = []
    for split, count, split_seed in (('train', num_train, seed), ('val', num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        images, annotations = [], []
        for idx in range(count):
            img, objects = synth_scene(rng, height, width, **SCENE)
            name = f'{idx:06d}.jpg'
            _write_jpg(osp.join(root, f'{split}2017', name), img)
            files.append(f'{split}2017/{name}')
            images.append(dict(id=idx + 1, file_name=name, height=height, width=width))
            for cat, mask in objects:
                ys, xs = np.nonzero(mask)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=idx + 1,
                    category_id=shape_categories[cat]['id'],
                    segmentation=mask_to_polygons(mask), area=float(mask.sum()),
                    bbox=[float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                          float(ys.max() - ys.min() + 1)], iscrowd=0))
        ann_file = f'annotations/instances_{split}2017.json'
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        with open(osp.join(root, ann_file), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories,
                           info=dict(description='partialnet-mm synthetic COCO demo')), f)
        files.append(ann_file)
    _finish(root, params, files)
    return True


# ---------------------------------------------------------------------------- ADE20K layout
ADE_CLASSES = ('background', ) + SHAPES  # labels 1..5 on disk; 0 = "other" (ignored)


def scene_label_map(height: int, width: int, objects: List[Tuple[int, np.ndarray]],
                    boundary: int = 1) -> np.ndarray:
    """ADE20K-style label map: 1 = background, 2.. = shape classes, 0 = ambiguous boundary."""
    labels = np.ones((height, width), np.uint8)
    edges = np.zeros((height, width), np.uint8)
    kernel = np.ones((2 * boundary + 1, 2 * boundary + 1), np.uint8)
    for cat, mask in objects:
        labels[mask.astype(bool)] = cat + 2
        edges |= cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, kernel)
    labels[edges.astype(bool)] = 0
    return labels


def make_ade20k_demo(root: str = DEMO_ROOTS['ade20k'], num_train: int = 500, num_val: int = 50,
                     image_size: Tuple[int, int] = (256, 256), seed: int = 0,
                     force: bool = False) -> bool:
    """ADE20K-layout semantic segmentation demo set. Returns True if (re)generated."""
    params = dict(num_train=num_train, num_val=num_val, image_size=list(image_size),
                  scene=_scene_params(SEGMENTATION_SCENE),
                  seed=seed, classes=list(ADE_CLASSES))
    if not _prepare(root, params, force):
        return False
    height, width = image_size
    files = []
    for split, count, split_seed in (('training', num_train, seed + 10),
                                     ('validation', num_val, seed + 11)):
        rng = np.random.default_rng(split_seed)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for idx in range(count):
            img, objects = synth_scene(rng, height, width, **SEGMENTATION_SCENE)
            stem = f'ADE_demo_{split}_{idx:06d}'
            _write_jpg(osp.join(root, 'images', split, stem + '.jpg'), img)
            label_path = osp.join(root, 'annotations', split, stem + '.png')
            if not cv2.imwrite(label_path, scene_label_map(height, width, objects)):
                raise OSError(f'could not write {label_path}')
            files += [f'images/{split}/{stem}.jpg', f'annotations/{split}/{stem}.png']
    _finish(root, params, files)
    return True


# ---------------------------------------------------------------------------- ImageNet layout
# One whole shape per classification image, on a calmer background than the detection and
# segmentation scenes. Measured with PartialNet-T0 from scratch (3200 images, 64 px, AdamW
# 5e-4, 1500 iterations): 54% top-1 on the cluttered scene settings (shapes cut by the border,
# full-contrast textures, horizons), 93-98% on these. Shape recognition from scratch on a few
# thousand images stays at chance for a long time when edges of the background compete with
# the outline that defines the class.
CLASSIFICATION_SCENE = dict(size_range=(0.45, 0.85), margin=0.5, background_contrast=0.5,
                            horizon_prob=0.)


# ImageNet classes (WordNet id, index among the 1000) that the shapes stand in for when a
# set must be read with ImageNet's own 1000 classes (the shipped ImageNet configs).
IMAGENET_STAND_INS = (('n01440764', 0), ('n01443537', 1), ('n01484850', 2), ('n01491361', 3))


def make_imagenet_demo(root: str = DEMO_ROOTS['imagenet'], num_train_per_class: int = 800,
                       num_val_per_class: int = 100, image_size: int = 80, seed: int = 0,
                       force: bool = False, imagenet_layout: bool = False) -> bool:
    """Classification set, one shape per image (the class). Returns True if (re)generated.

    Default: the folder layout the demo configs read (``{train,val}/<shape>/*.jpg``, classes
    from the folders). ``imagenet_layout``: ImageNet's own layout, as mmpretrain's
    ``ImageNet`` dataset reads it with the 1000 classes: ``train/<wnid>/<wnid>_*.JPEG``,
    ``val/ILSVRC2012_val_*.JPEG`` and ``meta/{train,val}.txt`` (path and class index per line),
    the shapes standing in for :data:`IMAGENET_STAND_INS`.
    """
    params = dict(num_train_per_class=num_train_per_class,
                  num_val_per_class=num_val_per_class, image_size=image_size, seed=seed,
                  classes=list(SHAPES), scene=_scene_params(CLASSIFICATION_SCENE))
    if imagenet_layout:
        params['imagenet_layout'] = [list(c) for c in IMAGENET_STAND_INS]
    if not _prepare(root, params, force):
        return False
    files = []
    for split, per_class, split_seed in (('train', num_train_per_class, seed + 20),
                                         ('val', num_val_per_class, seed + 21)):
        rng = np.random.default_rng(split_seed)
        meta = []
        for cat, name in enumerate(SHAPES):
            for idx in range(per_class):
                img, _ = synth_scene(rng, image_size, image_size, num_objects=(1, 1),
                                     shapes=(name, ), **CLASSIFICATION_SCENE)
                if not imagenet_layout:
                    rel = f'{split}/{name}/{name}_{idx:05d}.jpg'
                elif split == 'train':
                    wnid, label = IMAGENET_STAND_INS[cat]
                    rel = f'train/{wnid}/{wnid}_{idx:05d}.JPEG'
                    meta.append(f'{rel[len("train/"):]} {label}')
                else:
                    rel = f'val/ILSVRC2012_val_{len(meta) + 1:08d}.JPEG'
                    meta.append(f'{rel[len("val/"):]} {IMAGENET_STAND_INS[cat][1]}')
                _write_jpg(osp.join(root, rel), img)
                files.append(rel)
        if imagenet_layout:
            os.makedirs(osp.join(root, 'meta'), exist_ok=True)
            with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
                f.write('\n'.join(meta) + '\n')
            files.append(f'meta/{split}.txt')
    _finish(root, params, files)
    return True


MAKERS = dict(coco=make_coco_demo, ade20k=make_ade20k_demo, imagenet=make_imagenet_demo)
