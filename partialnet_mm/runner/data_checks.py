"""Broken data found before the first iteration (or at the sample that has it), named with
the file and the fix.

* :func:`check_annotations` (before training): for COCO-style annotation files, every
  annotation's category is one of the file's categories and its box lies inside its image;
  for every image a dataset lists (COCO files, ADE20K image/label pairs), the file exists and
  is complete (a JPEG ends with its end-of-image marker, a PNG with its ``IEND`` chunk: a
  file cut short by an interrupted copy fails this; reading two trailer bytes per file keeps
  the check cheap). Each version of a dataset is checked once: a dataset that passed is
  recorded in :class:`CheckedDatasets` and not read again (later runs, resumes, the other
  ranks of a distributed run) until its annotation file or its folders change.
* :class:`CheckSegLabels` (a pipeline transform, per sample): label-map values outside the
  classes (and not the ignore index) stop training with the label file named, instead of a
  loss that indexes out of bounds.
"""
import contextlib
import fcntl
import gc
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS

from .datasets import DEMO_HINT, DataError, dataset_configs, join_root

MAX_NAMED = 5  # problems named in one message
CHECKS_VERSION = 1  # raise when the checks change, so recorded versions are checked anew
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
    with open(ann_file) as f, _no_gc():
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


@contextlib.contextmanager
def _no_gc():
    """No cyclic garbage collection inside: parsing a COCO-size JSON file creates millions of
    containers, and each collection pass would walk all of them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cache_dir() -> str:
    """The project's cache folder: ``$PARTIALNET_CACHE``, else ``~/.cache/partialnet-mm``
    (where ``tools/setup_env.sh`` keeps its built mmcv wheels too)."""
    return os.environ.get('PARTIALNET_CACHE') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'partialnet-mm')


def _stat_version(path: str) -> List:
    st = os.stat(path)
    return [osp.abspath(path), st.st_size, st.st_mtime_ns]


def _folders_version(folder: str) -> List:
    """A folder and every folder below it with their mtimes (a file added, removed or
    renamed in a folder changes its mtime)."""
    version = []
    for current, dirs, _ in os.walk(folder):
        dirs.sort()
        version.append([osp.relpath(current, folder), os.stat(current).st_mtime_ns])
    return [osp.abspath(folder), version]


class CheckedDatasets:
    """The dataset versions that passed :func:`check_annotations`, so each is read once.

    A version is the annotation file's path, size and mtime and the image (and label)
    folders' mtimes: editing or replacing the annotation file, or adding, removing or
    renaming files in the folders, makes it a new version that is checked again. A file
    overwritten in place under the same name is not noticed: delete the record
    (:attr:`path`) to have everything checked again. The record is a small JSON file in
    :func:`cache_dir`; processes checking at the same time (the ranks of a distributed run)
    take turns on a lock, so one of them reads a dataset while the others wait and then find
    it recorded. Without a writable cache folder every run checks, as if nothing were
    recorded.
    """

    KEEP = 200  # versions recorded; the oldest are dropped

    def __init__(self, folder: Optional[str] = None):
        folder = folder or cache_dir()
        self.path = osp.join(folder, 'checked_datasets.json')
        self._lock_path = self.path + '.lock'

    @staticmethod
    def key(version) -> str:
        return hashlib.sha256(json.dumps([CHECKS_VERSION, version]).encode()).hexdigest()

    @contextlib.contextmanager
    def turn(self):
        """Hold the lock (no-op without a writable cache folder)."""
        try:
            os.makedirs(osp.dirname(self.path), exist_ok=True)
            lock = open(self._lock_path, 'a')
        except OSError:
            yield
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> Dict[str, str]:
        try:
            with open(self.path) as f:
                recorded = json.load(f)
            return recorded if isinstance(recorded, dict) else {}
        except (OSError, ValueError):
            return {}

    def passed(self, key: str) -> bool:
        return key in self._read()

    def record(self, key: str, description: str) -> None:
        recorded = self._read()
        recorded.pop(key, None)
        recorded[key] = description
        recorded = dict(list(recorded.items())[-self.KEEP:])
        temp = f'{self.path}.{os.getpid()}.part'
        try:
            with open(temp, 'w') as f:
                json.dump(recorded, f, indent=0)
            os.replace(temp, self.path)
        except OSError:
            pass  # nothing recorded: the next run checks again


def _dataset_problems(loader: str, ds: dict, checked: CheckedDatasets) -> List[str]:
    """The message lines for one dataset config (none if it is fine or was checked)."""
    ann = ds.get('ann_file')
    root = ds.get('data_root') or ''
    prefix = ds.get('data_prefix') or {}
    prefix = prefix if isinstance(prefix, dict) else dict(img=prefix)
    lines = []
    try:
        if ann and str(ann).endswith('.json'):
            ann_path = join_root(root, ann)
            image_root = join_root(root, prefix.get('img', ''))
            version = ['coco', _stat_version(ann_path), _folders_version(image_root)]
            what = ann_path
        elif prefix.get('seg_map_path'):
            version = ['seg'] + [_folders_version(join_root(root, prefix.get(k, '')))
                                 for k in ('img_path', 'seg_map_path')]
            what = root
        else:
            return []  # no content checks for this kind of dataset
    except OSError:
        return []  # a missing path: check_datasets names it
    key = checked.key(version)
    if checked.passed(key):
        return []
    if version[0] == 'coco':
        try:
            ann_problems, image_problems = _coco_problems(ann_path, image_root)
        except (OSError, ValueError):
            return []  # unreadable JSON: explain_data_errors names it when it is loaded
        if ann_problems:
            lines += [f'{loader}: {ann_path}:'] + [f'  {p}' for p in ann_problems]
            lines.append('  Fix the annotation file (or remove those annotations).')
        if image_problems:
            lines += [f'{loader}: images of {ann_path}:'] + [f'  {p}' for p in image_problems]
    else:
        image_problems = _image_problems(list(_segmentation_pairs(ds)))
        if image_problems:
            lines += [f'{loader}: {root}:'] + [f'  {p}' for p in image_problems]
    if not lines:
        checked.record(key, what)
    return lines


def check_annotations(cfg, loaders: Sequence[str], config_path: str = '',
                      checked: Optional[CheckedDatasets] = None) -> None:
    """Raise :class:`DataError` naming broken annotations and missing or truncated images.

    Runs after :func:`~.datasets.check_datasets` (the paths exist). COCO-style annotation
    files and folder-based segmentation datasets are checked, each version once
    (``checked``: where the checked versions are recorded, default :class:`CheckedDatasets`
    in :func:`cache_dir`); other datasets pass.
    """
    lines, checked = [], checked if checked is not None else CheckedDatasets()
    with checked.turn():
        for loader, ds in dataset_configs(cfg, loaders):
            lines += _dataset_problems(loader, ds, checked)
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
        seg = results['gt_seg_map']
        # one pass over the map, no sort: the values are listed only when some are wrong
        outside = (seg >= self.num_classes) & (seg != self.ignore_index)
        if seg.dtype.kind == 'i':
            outside |= seg < 0
        if outside.any():
            bad = np.unique(seg[outside])
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
