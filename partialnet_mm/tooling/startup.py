"""What a training run costs before its first iteration at COCO scale: ours against mmdet's own.

:func:`make_coco_scale_set` writes a dataset of COCO train2017's size in COCO's layout
(118,287 images, about 860k instances with polygon masks, COCO's 80 categories; val2017's
5,000 images beside it), the images hard links to a few real JPEGs, so the annotation files
are what costs. :func:`measure_startup` then times one-iteration training runs of a shipped
config in fresh processes, ``tools/train.py`` (ours, with an empty and with a filled record
of checked datasets) against mmdet's own ``tools/train.py``, in interleaved rounds, and reads
each run's peak resident memory: in one process, and in two ranks (``torchrun`` on the CPU,
gloo). :func:`measure_seg_label_check` times ``CheckSegLabels`` against the rest of the
ADE20K training pipeline. ``tools/benchmark.py --startup`` / ``--seg-label-check`` run them.
"""
import json
import math
import os
import os.path as osp
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import mmdet
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import TRANSFORMS, DefaultScope

from ..analysis.report import cpu_name, markdown_table, write_json_report
from ..runner.data_checks import CheckSegLabels
from .demo_data import coco_categories, make_ade20k_demo

COCO_TRAIN = dict(images=118287, instances=858706)
COCO_VAL = dict(images=5000, instances=36781)
IMAGE_SIZE = (480, 640)  # height, width of every (hard-linked) image
SOURCE_IMAGES = 8


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


def tree_cpu_seconds(root: int) -> float:
    """User and system seconds of process ``root`` and its descendants so far (with the
    children each has waited for), from ``/proc``."""
    parents, times = {}, {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # after the command: state, ppid, ..., utime, stime, cutime, cstime (fields 4, 14-17)
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(v) for v in fields[11:15])
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return sum(times.get(pid, 0) for pid in tree) / os.sysconf('SC_CLK_TCK')


def _read_markers(proc, start: float, markers: Dict[str, str],
                  log: List[str]) -> Dict[str, float]:
    """Read ``proc``'s output to the end; seconds from ``start`` to the first line holding
    each of ``markers`` (``{name: text}``: ``{name}_s``), and the CPU seconds of the process
    tree by then (``{name}_cpu_s``)."""
    seen: Dict[str, float] = {}
    for line in proc.stdout:
        log.append(line)
        for name, text in markers.items():
            if f'{name}_s' not in seen and text in line:
                seen[f'{name}_s'] = time.perf_counter() - start
                seen[f'{name}_cpu_s'] = tree_cpu_seconds(proc.pid)
    return seen


def timed_run(argv: Sequence[str], cwd: str, env: dict,
              markers: Dict[str, str]) -> Tuple[Dict[str, float], List[str]]:
    """Run ``argv``: its wall time, the seconds until it printed each of ``markers``
    (``{name}_s``) and the CPU seconds its processes had used by then (``{name}_cpu_s``),
    the CPU time of the whole run (``cpu_s``), the peak resident memory of its largest
    process (MiB); and its output lines."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log: List[str] = []
    seen = _read_markers(proc, start, markers, log)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    missing = [text for name, text in markers.items() if f'{name}_s' not in seen]
    if proc.returncode != 0 or missing:
        raise RuntimeError(f'{" ".join(argv)} failed (exit {proc.returncode}'
                           + (f', never printed {missing}' if missing else '') + '):\n'
                           + ''.join(log[-60:]))
    return dict(wall_s=wall, **seen, cpu_s=usage.ru_utime + usage.ru_stime,
                peak_rss_mib=usage.ru_maxrss / 1024), log


# ------------------------------------------------------------------------- start-up runs
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'mask_rcnn_partialnet_t0_coco.py')
OURS_COLD, OURS_WARM, MMDET = 'ours, record empty', 'ours, dataset recorded', "mmdet's own"
FORMS = (OURS_COLD, OURS_WARM, MMDET)
# what the runs print: all is built and the loop starts (mmengine's CheckpointHook, rank 0),
# and the log line of iteration 1 (every rank has done its first step)
MARKERS = dict(to_loop='Checkpoints will be saved to', to_first_iter='Iter(train) [1/1]')
CHECK_LOG = re.compile(r'data checks: .* checked in ([0-9.]+) s')  # ContentChecks' log line


def mmdet_train_script() -> str:
    """mmdet's own ``tools/train.py``, as its package installs it (``.mim/tools``)."""
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmdet\'s tools/train.py not found at {path}')
    return path


# the size the one iteration trains at: its compute, the same for every tool, would otherwise
# drown the start-up being measured in the noise of a shared CPU
FIRST_ITERATION_SCALE = (320, 192)


def one_iteration_options(config: str, data_root: str) -> List[str]:
    """``--cfg-options`` for a one-iteration run of a shipped COCO config on ``data_root``:
    every dataset and evaluator there, no pretrained backbone file, an iteration-based loop
    of one iteration (the datasets are still built whole; mmengine's epoch loop cannot stop
    early) that neither validates nor saves a checkpoint (the checkpoint hook still says
    where it would), a log line per iteration, and the train pipeline's ``Resize`` to
    :data:`FIRST_ITERATION_SCALE`."""
    pipeline = Config.fromfile(config).train_dataloader.dataset.get('pipeline', [])
    resize = [i for i, t in enumerate(pipeline) if t['type'] == 'Resize']
    scale = ','.join(str(v) for v in FIRST_ITERATION_SCALE)
    root = osp.join(data_root, '')
    val_ann = f'{root}annotations/instances_val2017.json'
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')] + [
        f'val_evaluator.ann_file={val_ann}', f'test_evaluator.ann_file={val_ann}',
        'model.backbone.init_cfg=None', 'train_cfg._delete_=True',
        'train_cfg.type=IterBasedTrainLoop', 'train_cfg.max_iters=1', 'train_cfg.val_begin=2',
        'default_hooks.checkpoint.interval=-1', 'default_hooks.checkpoint.save_last=False',
        'default_hooks.logger.interval=1', 'log_processor.by_epoch=False'] + [
        f'train_dataloader.dataset.pipeline.{i}.scale=({scale})' for i in resize]


# mmengine's pytorch launcher calls torch.cuda.set_device and wraps the model in DDP with
# device_ids: neither works without GPUs. In several ranks, mmdet's own train.py therefore
# joins the gloo group first (gloo_launch.py) and gets the CPU DDP wrapper that our
# tools/train.py sets itself (runner.launch.setup_cpu_distributed), with its settings.
CPU_DDP_OPTIONS = ['env_cfg.dist_cfg.backend=gloo',
                   'model_wrapper_cfg.type=CPUDistributedDataParallel',
                   'model_wrapper_cfg.broadcast_buffers=False',
                   'model_wrapper_cfg.find_unused_parameters=False']
GLOO_LAUNCH = osp.join(osp.dirname(osp.abspath(__file__)), 'gloo_launch.py')


def startup_command(form: str, ranks: int, config: str, data_root: str,
                    work_dir: str) -> List[str]:
    """The command line of one start-up run."""
    mmdet = form == MMDET
    options = one_iteration_options(config, data_root) + (CPU_DDP_OPTIONS if mmdet and ranks > 1
                                                  else [])
    script = mmdet_train_script() if mmdet else osp.join(ROOT, 'tools', 'train.py')
    args = [config, '--work-dir', work_dir, '--cfg-options', *options]
    if ranks == 1:
        return [sys.executable, script, *args]
    launch = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
              f'--nproc_per_node={ranks}']
    return launch + ([GLOO_LAUNCH] if mmdet else []) + [
        script, *args, '--launcher', 'pytorch']


def measure_startup(data_root: str, config: str = DEFAULT_CONFIG, rounds: int = 2,
                    ranks: Sequence[int] = (1, 2), work_root: Optional[str] = None,
                    log=print) -> List[dict]:
    """Time the start of one-iteration training runs of ``config`` on ``data_root``.

    Each round runs every form of :data:`FORMS` for each number of ``ranks``, in an order
    that rotates from round to round: our ``tools/train.py`` with an empty record of checked
    datasets (``$PARTIALNET_CACHE`` a new folder, so it checks the datasets), ours with the
    record a previous run of ours wrote, and mmdet's own ``tools/train.py`` (same config,
    ``custom_imports`` loading this package from the checkout). Returns one row per form and
    number of ranks: medians over the rounds of the seconds to :data:`MARKERS`, the wall
    time, the CPU time and the peak resident memory of the largest process, their ratios to
    mmdet's own, the seconds the data checks logged (ours with an empty record, when rank 0
    did the checking), and the median 1-minute load average seen before the runs.
    """
    work_root = work_root or tempfile.mkdtemp(prefix='partialnet-startup-')
    os.makedirs(work_root, exist_ok=True)
    warm_cache = osp.join(work_root, 'cache-warm')
    # one OpenMP thread per process, as torchrun gives its workers: on a shared CPU, idle
    # threads spinning in the one iteration would add noise and nothing else
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    runs: Dict[tuple, List[dict]] = {}
    plan = [(form, n) for n in ranks for form in FORMS]
    for r in range(rounds):
        shift = r % len(FORMS)
        order = [(FORMS[(FORMS.index(f) + shift) % len(FORMS)], n) for f, n in plan]
        if not osp.isdir(warm_cache):  # the warm form needs a record: a cold run first
            order.sort(key=lambda item: item[0] != OURS_COLD)
        for form, n in order:
            if form == OURS_WARM and not osp.isdir(warm_cache):
                continue
            run_dir = tempfile.mkdtemp(prefix='run-', dir=work_root)
            cache = warm_cache if form == OURS_WARM else osp.join(run_dir, 'cache')
            load, before = os.getloadavg()[0], _record_state(cache)
            result, output = timed_run(
                startup_command(form, n, config, data_root, osp.join(run_dir, 'work')),
                run_dir, dict(env, PARTIALNET_CACHE=cache), MARKERS)
            result['load'] = load
            checks = [float(m.group(1)) for m in map(CHECK_LOG.search, output) if m]
            if checks:  # rank 0's own (the other ranks log errors only)
                result['check_s'] = sum(checks)
            _check_record(form, cache, before)
            if form == OURS_COLD and not osp.isdir(warm_cache):
                shutil.copytree(cache, warm_cache)
            shutil.rmtree(run_dir, ignore_errors=True)
            runs.setdefault((form, n), []).append(result)
            log(f'round {r + 1}/{rounds}: {form}, {n} rank(s): '
                + ', '.join(f'{k} {v:.1f}' for k, v in result.items()))
    return startup_rows(runs)


def _record_state(cache: str) -> Optional[tuple]:
    path = osp.join(cache, 'checked_datasets.json')
    return (os.stat(path).st_mtime_ns, os.path.getsize(path)) if osp.isfile(path) else None


def _check_record(form: str, cache: str, before: Optional[tuple]) -> None:
    """That a run of ours with an empty record checked its datasets and recorded them, and
    that a run with the record filled left it as it was (read nothing again)."""
    after = _record_state(cache)
    if form == OURS_COLD and after is None:
        raise RuntimeError(f'{form}: no record of checked datasets in {cache}')
    if form == OURS_WARM and after != before:
        raise RuntimeError(f'{form}: the record in {cache} changed (datasets checked again)')


def startup_rows(runs: Dict[tuple, List[dict]]) -> List[dict]:
    """Medians per (form, ranks) and their ratios to mmdet's own with the same ranks."""
    medians = {key: {k: statistics.median(r[k] for r in results)
                     for k in results[0] if all(k in r for r in results)}
               for key, results in runs.items()}
    rows = []
    for (form, n), median in medians.items():
        base = medians.get((MMDET, n), {})
        row = dict(form=form, ranks=n, runs=len(runs[(form, n)]), **median)
        row.update({f'{k}_ratio': median[k] / base[k] for k in median
                    if k != 'load' and base.get(k)})
        rows.append(row)
    return sorted(rows, key=lambda row: (row['ranks'], FORMS.index(row['form'])))


def format_startup_table(rows: Sequence[dict], title: str) -> str:
    """The rows as a Markdown table: each figure with its ratio to mmdet's own."""
    columns = [('to loop (s)', 'to_loop_s', 1), ('CPU to loop (s)', 'to_loop_cpu_s', 1),
               ('to iteration 1 (s)', 'to_first_iter_s', 1),
               ('CPU to iteration 1 (s)', 'to_first_iter_cpu_s', 1),
               ('peak RSS (GiB)', 'peak_rss_mib', 1 / 1024)]

    def cell(row, key, scale):
        ratio = row.get(f'{key}_ratio')
        return f'{row[key] * scale:.2f}' + (f' ({ratio:.3f})' if ratio else '')

    header = ['ranks', 'tool'] + [c[0] for c in columns] + ['data checks (s)', 'load']
    cells = [[str(r['ranks']), r['form']] + [cell(r, key, scale) for _, key, scale in columns]
             + [f"{r['check_s']:.2f}" if 'check_s' in r else '', f"{r['load']:.1f}"]
             for r in rows]
    return markdown_table(header, cells, title)


# ------------------------------------------------------------------------- CheckSegLabels
ADE20K_CONFIG = osp.join(ROOT, 'configs', '_base_', 'datasets', 'ade20k_checked.py')


def measure_seg_label_check(samples: int = 20, rounds: int = 5,
                            image_size: Sequence[int] = (512, 683),
                            folder: Optional[str] = None) -> dict:
    """Per-sample seconds of ``CheckSegLabels`` and of the rest of the ADE20K training
    pipeline (``configs/_base_/datasets/ade20k_checked.py``, from loading the files to
    packing), on generated ADE20K-layout samples of ``image_size`` (height, width; ADE20K's
    typical 512x683): medians over ``rounds`` passes over the ``samples``, each transform
    timed on its own, with the threads of a data-loader worker (one torch thread, OpenCV
    without threads: mmengine's ``opencv_num_threads=0``). Returns ``check_s``, ``rest_s``
    and their ratio ``fraction``."""
    folder = folder or tempfile.mkdtemp(prefix='partialnet-seg-check-')
    make_ade20k_demo(folder, num_train=samples, num_val=1, image_size=tuple(image_size))
    cfg = Config.fromfile(ADE20K_CONFIG)
    with DefaultScope.overwrite_default_scope('mmseg'):
        transforms = [TRANSFORMS.build(t) for t in cfg.train_pipeline]
    names = sorted(n[:-4] for n in os.listdir(osp.join(folder, 'images', 'training')))
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    check, rest = [], []
    try:
        for _ in range(rounds):
            check_s = rest_s = 0.
            for name in names:
                results = dict(
                    img_path=osp.join(folder, 'images', 'training', name + '.jpg'),
                    seg_map_path=osp.join(folder, 'annotations', 'training', name + '.png'),
                    reduce_zero_label=True, seg_fields=[])
                for transform in transforms:
                    start = time.perf_counter()
                    results = transform(results)
                    spent = time.perf_counter() - start
                    if isinstance(transform, CheckSegLabels):
                        check_s += spent
                    else:
                        rest_s += spent
            check.append(check_s / len(names))
            rest.append(rest_s / len(names))
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
    check_s, rest_s = statistics.median(check), statistics.median(rest)
    return dict(samples=len(names), rounds=rounds, image_size=list(image_size),
                check_s=check_s, rest_s=rest_s, fraction=check_s / rest_s)


# ------------------------------------------------------------------------- tools/benchmark.py
def add_arguments(parser) -> None:
    """``tools/benchmark.py``'s options for the start-up and ``CheckSegLabels`` figures."""
    parser.add_argument('--startup', metavar='DATA_ROOT',
                        help='time the start of one-iteration training runs, our '
                        'tools/train.py against mmdet\'s own, on a COCO-train2017-sized set '
                        'at DATA_ROOT (generated there unless it is complete)')
    parser.add_argument('--startup-ranks', type=int, nargs='+', default=[1, 2],
                        help='--startup: numbers of processes (torchrun, gloo; default 1 2)')
    parser.add_argument('--startup-rounds', type=int, default=2,
                        help='--startup: interleaved rounds (default 2)')
    parser.add_argument('--seg-label-check', action='store_true',
                        help='CheckSegLabels per sample against the rest of the ADE20K '
                        'training pipeline (512x683 samples; --runs rounds)')


def requested(args) -> bool:
    return bool(args.startup or args.seg_label_check)


def run_benchmark(args) -> List[dict]:
    """What ``tools/benchmark.py --startup DATA_ROOT`` / ``--seg-label-check`` print (and
    write to ``--json``)."""
    rows = []
    if args.seg_label_check:
        result = measure_seg_label_check(rounds=args.runs)
        print(f'CheckSegLabels on {cpu_name()} ({os.cpu_count()} cores; as a data-loader '
              f'worker runs it: 1 torch thread, OpenCV unthreaded): '
              f'{result["check_s"] * 1e3:.3f} ms per sample, the rest of the ADE20K training '
              f'pipeline {result["rest_s"] * 1e3:.1f} ms: {100 * result["fraction"]:.2f} % '
              f'(median of {result["rounds"]} rounds over {result["samples"]} samples of '
              f'{result["image_size"]})')
        rows.append(dict(result, form='CheckSegLabels'))
    if args.startup:
        make_coco_scale_set(args.startup)
        found = measure_startup(args.startup, rounds=args.startup_rounds,
                                ranks=args.startup_ranks)
        title = (f'# start-up of one-iteration runs of {osp.relpath(DEFAULT_CONFIG, ROOT)} '
                 f'on a COCO-train2017-sized set; CPU {cpu_name()} ({os.cpu_count()} cores), '
                 f'torch {torch.__version__}, OMP_NUM_THREADS=1 per process; median of '
                 f'{args.startup_rounds} interleaved rounds; ratios to mmdet\'s own')
        print(format_startup_table(found, title))
        rows += found
    write_json_report(args.json, 'startup', rows)
    return rows
