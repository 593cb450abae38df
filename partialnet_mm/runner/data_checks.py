"""Broken data found before the first iteration (or at the sample that has it), named with
the file and the fix.

* :func:`check_annotations` (before training): for COCO-style annotation files, every
  annotation's category is one of the file's categories and its box lies inside its image;
  for every image a dataset lists (COCO files, ADE20K image/label pairs), the file exists and
  is complete (a JPEG ends with its end-of-image marker, a PNG with its ``IEND`` chunk: a
  file cut short by an interrupted copy fails this; reading two trailer bytes per file keeps
  the check cheap).
* :class:`CheckSegLabels` (a pipeline transform, per sample): label-map values outside the
  classes (and not the ignore index) stop training with the label file named, instead of a
  loss that indexes out of bounds.
"""
import json
import os
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS

from .datasets import DEMO_HINT, DataError, dataset_configs, join_root

MAX_NAMED = 5  # problems named in one message
JPEG_END = b'\xff\xd9'
PNG_END = b'IEND\xaeB`\x82'


def image_is_complete(path: str) -> bool:
    """Whether a JPEG / PNG file ends as a complete one does (other formats: exists)."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            if path.lower().endswith(('.jpg', '.jpeg')):
                f.seek(max(size - 64, 0))
                return JPEG_END in f.read()  # the marker, possibly followed by padding
            if path.lower().endswith('.png'):
                f.seek(max(size - len(PNG_END), 0))
                return f.read() == PNG_END
            return True
    except OSError:
        return False


def _image_problems(paths: Sequence[str]) -> List[str]:
    problems = []
    for path in paths:
        if not osp.isfile(path):
            problems.append(f'{path} is missing')
        elif not image_is_complete(path):
            problems.append(f'{path} is truncated (incomplete file)')
        if len(problems) >= MAX_NAMED:
            break
    return problems


def _coco_problems(ann_file: str, image_root: str) -> Tuple[List[str], List[str]]:
    """(annotation problems, image problems) of a COCO-style annotation file."""
    with open(ann_file) as f:
        coco = json.load(f)
    if not isinstance(coco, dict) or 'images' not in coco or 'annotations' not in coco:
        return [], []  # not COCO-style
    categories = {c['id'] for c in coco.get('categories', [])}
    images = {img['id']: img for img in coco['images']}
    problems = []
    for ann in coco['annotations']:
        image = images.get(ann.get('image_id'))
        where = f'annotation id {ann.get("id")} (image id {ann.get("image_id")})'
        if image is None:
            problems.append(f'{where}: no image with that id')
        elif ann.get('category_id') not in categories:
            problems.append(f'{where}: category_id {ann.get("category_id")} is not one of '
                            f'the file\'s categories {sorted(categories)}')
        elif 'bbox' in ann and not _box_inside(ann['bbox'], image):
            problems.append(f'{where}: bbox {ann["bbox"]} (x, y, w, h) is not inside the '
                            f'{image.get("width")}x{image.get("height")} image '
                            f'{image.get("file_name")}')
        if len(problems) >= MAX_NAMED:
            break
    paths = [join_root(image_root, img['file_name']) for img in coco['images']]
    return problems, _image_problems(paths)


def _box_inside(bbox, image: dict, tolerance: float = 1.) -> bool:
    x, y, w, h = bbox
    width, height = image.get('width'), image.get('height')
    if w <= 0 or h <= 0 or x < -tolerance or y < -tolerance:
        return False
    return width is None or height is None or (x + w <= width + tolerance
                                               and y + h <= height + tolerance)


def _segmentation_pairs(ds: dict) -> Iterator[str]:
    """Image and label files of a folder-based segmentation dataset config (mmseg)."""
    root = ds.get('data_root') or ''
    prefix = ds.get('data_prefix') or {}
    img_dir = join_root(root, prefix.get('img_path', ''))
    seg_dir = join_root(root, prefix.get('seg_map_path', ''))
    img_suffix, seg_suffix = ds.get('img_suffix', '.jpg'), ds.get('seg_map_suffix', '.png')
    if not (osp.isdir(img_dir) and osp.isdir(seg_dir)):
        return
    for folder, _, files in os.walk(img_dir):
        for name in sorted(files):
            if name.endswith(img_suffix):
                rel = osp.relpath(osp.join(folder, name), img_dir)
                yield osp.join(img_dir, rel)
                yield osp.join(seg_dir, rel[:-len(img_suffix)] + seg_suffix)


def check_annotations(cfg, loaders: Sequence[str], config_path: str = '') -> None:
    """Raise :class:`DataError` naming broken annotations and missing or truncated images.

    Runs after :func:`~.datasets.check_datasets` (the paths exist). COCO-style annotation
    files and folder-based segmentation datasets are checked; other datasets pass.
    """
    lines = []
    for loader, ds in dataset_configs(cfg, loaders):
        ann = ds.get('ann_file')
        root = ds.get('data_root') or ''
        prefix = ds.get('data_prefix') or {}
        prefix = prefix if isinstance(prefix, dict) else dict(img=prefix)
        if ann and str(ann).endswith('.json'):
            ann_path = join_root(root, ann)
            image_root = join_root(root, prefix.get('img', ''))
            try:
                ann_problems, image_problems = _coco_problems(ann_path, image_root)
            except (OSError, ValueError):
                continue  # unreadable JSON: explain_data_errors names it when it is loaded
            if ann_problems:
                lines += [f'{loader}: {ann_path}:'] + [f'  {p}' for p in ann_problems]
                lines.append('  Fix the annotation file (or remove those annotations).')
            if image_problems:
                lines += [f'{loader}: images of {ann_path}:'] + \
                    [f'  {p}' for p in image_problems]
        elif prefix.get('seg_map_path'):
            image_problems = _image_problems(list(_segmentation_pairs(ds)))
            if image_problems:
                lines += [f'{loader}: {root}:'] + [f'  {p}' for p in image_problems]
    if lines:
        demo = any('demo' in line for line in lines)
        fix = (f'This is an embedded demo set: regenerate it with `{DEMO_HINT} --force`.'
               if demo else 'Restore the files from the original dataset (a copy that '
               'was interrupted leaves truncated files) or remove them from the annotations.')
        raise DataError('\n'.join([f'Broken data for {config_path or "this config"}:'] +
                                  lines + [fix]))


@TRANSFORMS.register_module()
class CheckSegLabels(BaseTransform):
    """Stop at a label map with values outside the classes, naming the file and the fix.

    Place it after ``LoadAnnotations``: it checks ``gt_seg_map`` (after
    ``reduce_zero_label``) against ``[0, num_classes)`` and ``ignore_index``; samples without
    a label map (an inferencer's pipeline drops ``LoadAnnotations``) pass as they are.

    Args:
        num_classes (int): Classes of the decode head.
        ignore_index (int): The label that is ignored. Defaults to 255.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> Optional[dict]:
        if 'gt_seg_map' not in results:  # inference pipelines drop LoadAnnotations
            return results
        labels = np.unique(results['gt_seg_map'])
        bad = labels[(labels >= self.num_classes) & (labels != self.ignore_index)]
        bad = np.concatenate([labels[labels < 0], bad])
        if bad.size:
            raise DataError(
                f'label map {results.get("seg_map_path")} has values {bad.tolist()} outside '
                f'the {self.num_classes} classes (0..{self.num_classes - 1}'
                + (' after reduce_zero_label' if results.get('reduce_zero_label') else '')
                + f', {self.ignore_index} = ignored). Fix the label map, or the config\'s '
                f'num_classes / reduce_zero_label if the dataset has other classes.')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
