"""Broken data found before the first iteration (or at the sample that has it), named with
the file and the fix.

* Dataset contents, before training (:class:`ContentChecks`): in a COCO-style annotation
  file, every annotation refers to one of the file's images, has one of its categories and
  a box inside its image; every image a dataset lists (COCO files, ADE20K image/label pairs)
  exists and is complete (a JPEG ends with its end-of-image marker, a PNG with its ``IEND``
  chunk: a file cut short by an interrupted copy fails this; only the last bytes of each
  file are read, by several threads at once).
* Each version of a dataset is checked once (:class:`CheckedDatasets`): later runs, resumes
  and the other ranks of a distributed run find it recorded and read nothing of it. A
  training run checks a COCO file on the parse its dataset does anyway
  (:meth:`ContentChecks.on_dataset_parse`), so even the first run reads the file once, as
  mmdet's own ``tools/train.py`` does.
* :class:`CheckSegLabels` (a pipeline transform, per sample): label-map values outside the
  classes (and not the ignore index) stop training with the label file named, instead of a
  loss that indexes out of bounds.
"""
import contextlib
import dataclasses
import fcntl
import gc
import hashlib
import json
import os
import os.path as osp
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

from .datasets import DEMO_HINT, DataError, dataset_configs, join_root

MAX_NAMED = 5  # problems named in one message
CHECKS_VERSION = 2  # raise when the checks change, so recorded versions are checked anew
JPEG_END = b'\xff\xd9'
PNG_END = b'IEND\xaeB`\x82'
COMPLETE_ENDINGS = {'.jpg': JPEG_END, '.jpeg': JPEG_END, '.png': PNG_END}
TAIL = 64  # bytes read at the end of each file: a JPEG's marker may be followed by padding
IO_THREADS = 8  # files read at once: a cold disk or network storage serves them in parallel
CHUNK = 1024  # files per task of a reading thread


# ----------------------------------------------------------------------------- files


def file_problem(path: str) -> Optional[str]:
    """What is wrong with an image or label file (None: nothing): a JPEG must have its
    end-of-image marker in its last :data:`TAIL` bytes, a PNG must end with its ``IEND``
    chunk; other formats need only exist."""
    problems = _first_problems([path])
    return problems[0] if problems else None


def _first_problems(paths: Sequence[str]) -> List[str]:
    """The first :data:`MAX_NAMED` problems of ``paths``, in one loop of four system calls
    per file (open, seek to the end, read, close): no stat, no Python file object."""
    problems = []
    for path in paths:
        ending = COMPLETE_ENDINGS.get(path[path.rfind('.'):].lower())
        problem = None
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            problem = f'{path} is missing'
        except OSError as err:
            problem = f'{path} cannot be read ({err.strerror})'
        else:
            try:
                if ending is None:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        problem = f'{path} is missing (not a file)'
                else:
                    try:
                        os.lseek(fd, -TAIL, os.SEEK_END)
                    except OSError:  # shorter than TAIL
                        pass
                    tail = os.read(fd, TAIL)
                    if not (ending in tail if ending is JPEG_END else tail.endswith(ending)):
                        problem = f'{path} is truncated (incomplete file)'
            except IsADirectoryError:
                problem = f'{path} is missing (a folder has its name)'
            except OSError as err:
                problem = f'{path} cannot be read ({err.strerror})'
            finally:
                os.close(fd)
        if problem:
            problems.append(problem)
            if len(problems) >= MAX_NAMED:
                break
    return problems


def file_problems(paths: Sequence[str]) -> List[str]:
    """The first :data:`MAX_NAMED` problems of ``paths`` (:func:`file_problem`), in order."""
    if len(paths) <= CHUNK:
        return _first_problems(paths)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ThreadPoolExecutor(IO_THREADS) as pool:
        found = [p for problems in pool.map(_first_problems, chunks) for p in problems]
    return found[:MAX_NAMED]


def folder_mtimes(folders) -> Dict[str, int]:
    """``{absolute folder: mtime_ns}``: a file added to, removed from or renamed in a folder
    changes its mtime."""
    return {osp.abspath(f): os.stat(f).st_mtime_ns for f in sorted(folders)}


# ----------------------------------------------------------------------------- COCO files
def annotation_problems(coco: dict, images: Dict) -> List[str]:
    """The first :data:`MAX_NAMED` annotations of a COCO-style dict that refer to no image
    of the file (``images``: id -> image), have a category that is not one of the file's,
    or a box ``(x, y, w, h)`` without positive size or not inside its image (1 px
    tolerance). Annotations without ``bbox`` pass."""
    categories = {c.get('id') for c in coco.get('categories') or [] if isinstance(c, dict)}
    problems = []
    # one pass in which the usual annotation costs a few lookups; the rare one that fails
    # them (or has no bbox, or an image without a size) is described by _annotation_problem
    for ann in coco['annotations']:
        try:
            image = images[ann['image_id']]
            x, y, w, h = ann['bbox']
            if (ann['category_id'] in categories and w > 0 and h > 0 and x >= -1 and y >= -1
                    and x + w <= image['width'] + 1 and y + h <= image['height'] + 1):
                continue
        except (KeyError, TypeError, ValueError):
            pass
        problem = _annotation_problem(ann, images, categories)
        if problem:
            problems.append(problem)
            if len(problems) >= MAX_NAMED:
                break
    return problems


def _annotation_problem(ann, images: Dict, categories: set) -> Optional[str]:
    if not isinstance(ann, dict):
        return f'annotation {ann!r} is not an object'
    image = images.get(ann.get('image_id'))
    where = f'annotation id {ann.get("id")} (image id {ann.get("image_id")})'
    if image is None:
        return f'{where}: no image with that id'
    if ann.get('category_id') not in categories:
        return (f'{where}: category_id {ann.get("category_id")} is not one of the file\'s '
                f'categories {_sorted(categories)}')
    if 'bbox' in ann and not _box_inside(ann['bbox'], image):
        return (f'{where}: bbox {ann["bbox"]} (x, y, w, h) is not inside the '
                f'{image.get("width")}x{image.get("height")} image {image.get("file_name")}')
    return None


def _sorted(values) -> list:
    try:
        return sorted(values)
    except TypeError:  # ids of mixed types
        return sorted(values, key=str)


def _box_inside(bbox, image: dict, tolerance: float = 1.) -> bool:
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return False  # not four numbers
    width, height = image.get('width'), image.get('height')
    if not (w > 0 and h > 0 and x >= -tolerance and y >= -tolerance):
        return False
    return width is None or height is None or (x + w <= width + tolerance
                                               and y + h <= height + tolerance)


def image_paths(coco: dict, image_root: str) -> Tuple[List[str], set, List[str]]:
    """(image files, the folders holding them, problems of images without a file name) of a
    COCO-style dict whose file names are relative to ``image_root``."""
    prefix, paths, problems = osp.join(image_root, ''), [], []
    folders = {image_root}
    for image in coco['images']:
        name = image.get('file_name') if isinstance(image, dict) else None
        if not isinstance(name, str) or not name:
            if len(problems) < MAX_NAMED:
                problems.append(f'image {image!r} has no file_name')
            continue
        path = name if osp.isabs(name) else prefix + name
        if '/' in name:  # COCO's own names have none: one folder, no per-file work
            folders.add(osp.dirname(path))
        paths.append(path)
    return paths, folders, problems


def is_coco_style(coco) -> bool:
    return (isinstance(coco, dict) and isinstance(coco.get('images'), list)
            and isinstance(coco.get('annotations'), list))


@contextlib.contextmanager
def paused_gc():
    """No cyclic garbage collection inside. Parsing a COCO-size annotation file creates tens
    of millions of containers, none of them in a reference cycle (refcounting frees them);
    with collection on, each full pass walks all that are alive, and the passes come each
    time the heap has grown by a quarter: seconds to tens of seconds of a dataset's build,
    which fall at different points in different processes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_json(path: str):
    """A JSON file, parsed without cyclic garbage collection (:func:`paused_gc`)."""
    with open(path) as f, paused_gc():
        return json.load(f)


# ----------------------------------------------------------------------------- record
def cache_dir() -> str:
    """The project's cache folder: ``$PARTIALNET_CACHE``, else ``~/.cache/partialnet-mm``
    (where ``tools/setup_env.sh`` keeps its built mmcv wheels too)."""
    return os.environ.get('PARTIALNET_CACHE') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'partialnet-mm')


class CheckedDatasets:
    """The dataset versions that passed the content checks, so each is read once.

    A version is keyed by what names it: for a COCO file the file (path, size, mtime, inode)
    and its image folder; for a segmentation set its image and label folders. Each record
    also keeps the mtimes of the folders whose files were checked, and holds only while
    they are unchanged. Editing or replacing the annotation file, or adding, removing or
    renaming a file in those folders, makes a new version that is checked again. A file
    overwritten in place under the same name is not noticed: delete the record
    (:attr:`path`) to have everything checked again.

    The record is a small JSON file in :func:`cache_dir`, replaced atomically. Processes
    checking at the same time (the ranks of a distributed run) take turns on a lock
    (:meth:`turn`), so one reads a dataset while the others wait and then find it recorded.
    Without a writable cache folder, or with an unreadable record, every run checks.
    """

    KEEP = 200  # versions recorded; the oldest are dropped

    def __init__(self, folder: Optional[str] = None):
        folder = folder or cache_dir()
        self.path = osp.join(folder, 'checked_datasets.json')
        self._lock_path = self.path + '.lock'

    @staticmethod
    def key(identity) -> str:
        return hashlib.sha256(json.dumps([CHECKS_VERSION, identity]).encode()).hexdigest()

    @contextlib.contextmanager
    def turn(self):
        """Hold the lock (without a writable cache folder, or a file system without locks,
        nothing is held: each process then checks for itself)."""
        try:
            os.makedirs(osp.dirname(self.path), exist_ok=True)
            lock = open(self._lock_path, 'a')
        except OSError:
            yield
            return
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:
                yield
                return
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> Dict[str, dict]:
        try:
            with open(self.path) as f:
                recorded = json.load(f)
        except (OSError, ValueError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    def passed(self, key: str) -> bool:
        """Whether the version ``key`` was recorded and its folders are as they were."""
        entry = self._read().get(key)
        folders = entry.get('folders') if isinstance(entry, dict) else None
        if not isinstance(folders, dict):
            return False
        try:
            return folder_mtimes(folders) == folders
        except (OSError, TypeError):
            return False

    def record(self, key: str, dataset: str, folders: Dict[str, int]) -> None:
        recorded = self._read()
        recorded.pop(key, None)
        recorded[key] = dict(dataset=dataset, folders=folders)
        recorded = dict(list(recorded.items())[-self.KEEP:])
        temp = f'{self.path}.{os.getpid()}.part'
        try:
            with open(temp, 'w') as f:
                json.dump(recorded, f, indent=1)
            os.replace(temp, self.path)
        except OSError:
            pass  # nothing recorded: the next run checks again


# ----------------------------------------------------------------------------- datasets
@dataclasses.dataclass
class DatasetVersion:
    """One dataset of a run, as the content checks see it."""
    loader: str
    kind: str  # 'coco' (an annotation file and its images) or 'seg' (image/label folders)
    key: str  # CheckedDatasets.key of this version
    name: str  # the annotation file or the data root, as messages name the dataset
    ds: dict  # the leaf dataset config
    image_root: str = ''  # 'coco': the folder image file names are relative to


def dataset_versions(cfg, loaders: Sequence[str]) -> List[DatasetVersion]:
    """The datasets of ``loaders`` that have content checks (COCO-style annotation files,
    folder-based segmentation sets), once per version; paths that do not exist are left to
    :func:`~.datasets.check_datasets`."""
    versions = {}
    for loader, ds in dataset_configs(cfg, loaders):
        root = ds.get('data_root') or ''
        prefix = ds.get('data_prefix') or {}
        prefix = prefix if isinstance(prefix, dict) else dict(img=prefix)
        ann = ds.get('ann_file')
        try:
            if ann and str(ann).endswith('.json'):
                path = join_root(root, ann)
                image_root = join_root(root, prefix.get('img', ''))
                info = os.stat(path)
                identity = ['coco', osp.abspath(path), info.st_size, info.st_mtime_ns,
                            info.st_ino, osp.abspath(image_root)]
                version = DatasetVersion(loader, 'coco', CheckedDatasets.key(identity), path,
                                         ds, image_root)
            elif prefix.get('seg_map_path'):
                folders = [join_root(root, prefix.get(k, '')) for k in ('img_path',
                                                                         'seg_map_path')]
                if not all(osp.isdir(f) for f in folders):
                    continue
                identity = ['seg'] + [osp.abspath(f) for f in folders] + [
                    ds.get('img_suffix', '.jpg'), ds.get('seg_map_suffix', '.png')]
                version = DatasetVersion(loader, 'seg', CheckedDatasets.key(identity), root,
                                         ds)
            else:
                continue
        except OSError:
            continue
        versions.setdefault(version.key, version)
    return list(versions.values())


def _segmentation_files(ds: dict) -> Tuple[List[str], set]:
    """(image and label files, their folders) of a folder-based segmentation dataset."""
    root = ds.get('data_root') or ''
    prefix = ds.get('data_prefix') or {}
    img_dir = join_root(root, prefix.get('img_path', ''))
    seg_dir = join_root(root, prefix.get('seg_map_path', ''))
    img_suffix, seg_suffix = ds.get('img_suffix', '.jpg'), ds.get('seg_map_suffix', '.png')
    files, folders = [], set()
    for folder, dirs, names in os.walk(img_dir):
        dirs.sort()
        folders.add(folder)
        rel_folder = osp.relpath(folder, img_dir)
        folders.add(osp.normpath(osp.join(seg_dir, rel_folder)))
        for name in sorted(names):
            if name.endswith(img_suffix):
                rel = osp.normpath(osp.join(rel_folder, name))
                files.append(osp.join(img_dir, rel))
                files.append(osp.join(seg_dir, rel[:-len(img_suffix)] + seg_suffix))
    return files, {f for f in folders if osp.isdir(f)}


class ContentChecks:
    """The content checks of a run's datasets, each version once (:class:`CheckedDatasets`).

    Made before the datasets are built: versions recorded as checked are dropped at once, so
    a run whose datasets were all checked before costs a read of the small record and a stat
    of each annotation file and recorded folder. :meth:`check_folders` checks segmentation
    folders now; :meth:`on_dataset_parse` checks each COCO file on the parse its dataset
    does anyway; :meth:`check_all` checks everything now, reading COCO files itself. A
    dataset with problems is not recorded; the problems raise :class:`DataError`.

    Args:
        cfg: The run's config.
        loaders (Sequence[str]): ``train_dataloader``, ``val_dataloader``, ...
        config_path (str): The config file, as messages name it.
        checked (CheckedDatasets, optional): The record (default: in :func:`cache_dir`).
    """

    def __init__(self, cfg, loaders: Sequence[str], config_path: str = '',
                 checked: Optional[CheckedDatasets] = None):
        self.checked = checked if checked is not None else CheckedDatasets()
        self.config_path = config_path
        self.pending = [v for v in dataset_versions(cfg, loaders)
                        if not self.checked.passed(v.key)]
        self.read: List[str] = []  # the datasets this process checked (others were recorded)
        self._lines: List[str] = []

    def check_folders(self) -> None:
        """Check the pending segmentation datasets now."""
        for version in [v for v in self.pending if v.kind == 'seg']:
            self._check(version)
        self.pending = [v for v in self.pending if v.kind != 'seg']
        self._raise()

    def check_all(self) -> None:
        """Check every pending dataset now (COCO files parsed here)."""
        for version in self.pending:
            self._check(version)
        self.pending = []
        self._raise()

    @contextlib.contextmanager
    def on_dataset_parse(self):
        """Inside, a pending COCO file that pycocotools' ``COCO`` parses (as mmdet's datasets
        and metrics do) is checked on that parse, before its dataset goes on. On leaving,
        pending datasets not parsed that way are checked here, and problems raise: after the
        datasets are built, not inside mmengine's builders (which would prefix them)."""
        by_file: Dict[str, List[DatasetVersion]] = {}
        for version in self.pending:
            if version.kind == 'coco':
                by_file.setdefault(osp.realpath(version.name), []).append(version)
        if by_file:  # COCO files come with mmdet's [det] extra, which brings pycocotools
            from pycocotools.coco import COCO
            original = COCO.__init__
        checks = self

        def checked_init(coco, annotation_file=None, *args, **kwargs):
            original(coco, annotation_file, *args, **kwargs)
            if isinstance(annotation_file, str):
                for version in by_file.pop(osp.realpath(annotation_file), []):
                    checks._check(version, coco.dataset, coco.imgs)
                    checks.pending.remove(version)

        if by_file:
            COCO.__init__ = checked_init
        try:
            yield
        finally:
            if by_file:
                COCO.__init__ = original
        self.check_all()

    def _check(self, version: DatasetVersion, coco: Optional[dict] = None,
               images: Optional[Dict] = None) -> None:
        with self.checked.turn():
            if self.checked.passed(version.key):
                return  # another process (another rank) checked it meanwhile
            start = time.perf_counter()
            if version.kind == 'coco':
                lines, folders, files = _coco_lines(version, coco, images)
            else:
                lines, folders, files = _segmentation_lines(version)
            self.read.append(version.name)
            if lines:
                self._lines += lines
                return
            if folders is None:
                return  # not readable now: the dataset's own loading names what is wrong
            self.checked.record(version.key, version.name, folders)
        print_log(f'data checks: {version.name} ({files} files) checked in '
                  f'{time.perf_counter() - start:.2f} s and recorded in {self.checked.path}: '
                  f'not read again while it and its folders are unchanged', 'current')

    def _raise(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        demo = any('demo' in line for line in lines)
        fix = (f'This is an embedded demo set: regenerate it with `{DEMO_HINT} --force`.'
               if demo else 'Restore the files from the original dataset (a copy that '
               'was interrupted leaves truncated files) or remove them from the annotations.')
        raise DataError('\n'.join([f'Broken data for {self.config_path or "this config"}:']
                                  + lines + [fix]))


def _coco_lines(version: DatasetVersion, coco: Optional[dict],
                images: Optional[Dict]) -> Tuple[List[str], Optional[Dict[str, int]], int]:
    """(message lines, folder mtimes to record (None: do not record), files checked) of a
    COCO file, parsed here unless ``coco`` (and its id -> image index ``images``) is given."""
    if coco is None:
        try:
            coco = load_json(version.name)
        except (OSError, ValueError):
            return [], None, 0  # unreadable: explain_data_errors names it when it is loaded
    if not is_coco_style(coco):
        return [], {}, 0  # not a COCO-style file: nothing to check
    if images is None:
        images = {image.get('id'): image for image in coco['images']
                  if isinstance(image, dict)}
    paths, folders, unnamed = image_paths(coco, version.image_root)
    try:
        mtimes = folder_mtimes(folders)  # before the files are read: changes meanwhile count
    except OSError:
        mtimes = None
    lines = []
    problems = (unnamed + annotation_problems(coco, images))[:MAX_NAMED]
    if problems:
        lines += [f'{version.loader}: {version.name}:'] + [f'  {p}' for p in problems]
        lines.append('  Fix the annotation file (or remove those annotations).')
    problems = file_problems(paths)
    if problems:
        lines += [f'{version.loader}: images of {version.name}:'] + [
            f'  {p}' for p in problems]
    return lines, mtimes, len(paths)


def _segmentation_lines(version: DatasetVersion
                        ) -> Tuple[List[str], Optional[Dict[str, int]], int]:
    """As :func:`_coco_lines`, for a folder-based segmentation dataset."""
    files, folders = _segmentation_files(version.ds)
    try:
        mtimes = folder_mtimes(folders)
    except OSError:
        mtimes = None
    problems = file_problems(files)
    lines = [f'{version.loader}: {version.name}:'] + [f'  {p}' for p in problems] \
        if problems else []
    return lines, mtimes, len(files)


def check_annotations(cfg, loaders: Sequence[str], config_path: str = '',
                      checked: Optional[CheckedDatasets] = None) -> List[str]:
    """Check the contents of the datasets of ``loaders`` now (:class:`ContentChecks`);
    return the datasets read (those recorded as checked before are not); raise
    :class:`DataError` naming broken annotations and missing or truncated images.

    Runs after :func:`~.datasets.check_datasets` (the paths exist). A training run checks
    COCO files on its datasets' own parse instead (``partialnet_mm.apis.train``).
    """
    checks = ContentChecks(cfg, loaders, config_path, checked)
    checks.check_all()
    return checks.read


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
