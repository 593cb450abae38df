"""Whole detectors and segmentors with PartialNet and with the backbones users pick instead.

Each family is one of the project's configs (:data:`FAMILIES`) whose backbone is swapped for
every backbone of a run (:data:`BACKBONES`: PartialNet variants, mmdet's ResNet-18/50,
FasterNet through timm and mmpretrain's ``TIMMBackbone``); only the neck's ``in_channels``
follow the backbone (read off a forward pass), the neck and heads stay the family's. Every
model is measured in its fastest inference form: PartialNet folded (``switch_to_deploy``),
then every convolution-BatchNorm pair fused (mmcv's ``fuse_conv_bn``) in every model.

Per model: parameters, FLOPs (:func:`~partialnet_mm.analysis.flops.count_flops`),
latency of the backbone and neck and of the whole network at batch 1 (``mode='tensor'``: the
heads included, proposal NMS of two-stage detectors included, no final post-processing),
a training step with the family's own losses on synthetic ground truth, and its peak memory.
All models of a family are timed in the same interleaved rounds
(:func:`~partialnet_mm.analysis.timing.time_interleaved`), so a load change on a shared
machine affects them alike: compare them as ratios. SyncBN is replaced by BN (one process).
"""
import copy
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..analysis.flops import TensorForward, count_flops
from ..analysis.models import (build_config_model, fastest_inference_form,
                               synthetic_data_samples)
from ..analysis.report import machine_description, markdown_table, write_json_report
from ..analysis.timing import time_interleaved
from ..models import PartialNet
from ..runner.config import config_scope, load_config, project_file, scope_of
from .benchmark import peak_step_memory


class Family(NamedTuple):
    title: str
    config: str  # relative to the project root; its backbone is swapped
    hw: Tuple[int, int]  # (H, W) the family is measured at
    with_mask: bool = False  # its losses need instance masks
    # GroupNorm groups for every model of the family, where the config's cannot split the
    # layers some backbones' widths give the neck (None: as configured)
    gn_groups: Optional[int] = None


# (H, W): what mmdet's 1333 x 800 test resize gives a 4:3 image once padded to stride 32;
# RTMDet's own 640 x 640 test size; Semantic FPN's 512 x 512 crop. RTMDet keeps the T2
# config's neck and head (RTMDet-s widths) for every backbone, with 8 GroupNorm groups: 32
# cannot split the 40- and 48-channel halves of the CSP layers that FasterNet-T0's and
# PartialNet-T1's stride-8 widths give it (GN's cost does not depend on the groups).
FAMILIES = OrderedDict([
    ('mask_rcnn', Family('Mask R-CNN', 'configs/mask_rcnn_partialnet_t0_coco.py', (800, 1344),
                         with_mask=True)),
    ('retinanet', Family('RetinaNet', 'configs/retinanet_partialnet_t0_coco.py', (800, 1344))),
    ('rtmdet', Family('RTMDet', 'configs/rtmdet_partialnet_t2_coco.py', (640, 640),
                      gn_groups=8)),
    ('fpn', Family('Semantic FPN', 'configs/fpn_partialnet_t0_ade20k.py', (512, 512))),
])
PARTIALNET_ARCHS = ('t0', 't1', 't2', 's', 'm', 'l')
RESNET_DEPTHS = dict(r18=18, r34=34, r50=50, r101=101)
FASTERNET_SIZES = ('t0', 't1', 't2', 's', 'm', 'l')
DEFAULT_BACKBONES = ('t0', 't1', 't2', 's', 'r18', 'r50', 'fasternet_t0', 'fasternet_t1',
                     'fasternet_t2', 'fasternet_s')
TIMM_INSTALL = 'pip install "partialnet-mm[peers]"  (or: pip install timm==1.0.31 --no-deps)'


def backbone_names() -> List[str]:
    return list(PARTIALNET_ARCHS) + list(RESNET_DEPTHS) + [
        f'fasternet_{s}' for s in FASTERNET_SIZES]


def display_name(name: str) -> str:
    """``t0`` -> ``PartialNet-T0``, ``r50`` -> ``ResNet-50``, ``fasternet_t2`` ->
    ``FasterNet-T2``."""
    if name in PARTIALNET_ARCHS:
        return f'PartialNet-{name.upper()}'
    if name in RESNET_DEPTHS:
        return f'ResNet-{RESNET_DEPTHS[name]}'
    if name.startswith('fasternet_'):
        return f'FasterNet-{name[len("fasternet_"):].upper()}'
    raise ValueError(f'unknown backbone {name!r}; choose from {backbone_names()}')


def add_arguments(parser) -> None:
    """``tools/benchmark.py``'s options for peers: other backbones in whole models
    (``--peers``), the authors' code (``--authors-code``); and ``--json`` for every mode."""
    parser.add_argument('--authors-code', metavar='PATH', help='a clone of haiduo/PartialNet: '
                        'every --arch also in the authors\' code, with the same weights')
    parser.add_argument('--peers', nargs='+', choices=list(FAMILIES), default=None,
                        help='whole models of these families, one per --backbones entry')
    parser.add_argument('--backbones', nargs='+', choices=backbone_names(),
                        default=list(DEFAULT_BACKBONES),
                        help='--peers: backbones (PartialNet archs, r18/r50, fasternet_*)')
    parser.add_argument('--train-runs', type=int, default=None,
                        help='--peers: timed training rounds (default: --runs)')
    parser.add_argument('--no-flops', action='store_true', help='--peers: skip FLOPs')
    parser.add_argument('--no-train', action='store_true',
                        help='--peers: skip the training steps (and their memory)')
    parser.add_argument('--json', metavar='FILE', help='also write the rows to FILE '
                        '(tools/plot_benchmark.py reads it)')


def check_arguments(parser, args):
    """``tools/benchmark.py --peers``'s own rules; its batch size defaults to 2."""
    if args.arch or args.config or args.authors_code or args.amp or args.device:
        parser.error('--peers takes --backbones (not --arch, --config, --authors-code) '
                     'and times fp32 on the CPU (no --amp, --device)')
    args.batch_size = 2 if args.batch_size == 16 else args.batch_size
    return args


def require_timm() -> None:
    """Stop with the install command when timm (FasterNet's library) is missing."""
    try:
        import timm  # noqa: F401
    except ImportError:
        raise ImportError(f'FasterNet peers are built by timm, which is not installed: '
                          f'{TIMM_INSTALL}') from None


def backbone_cfg(name: str, template: dict) -> dict:
    """The ``model.backbone`` of backbone ``name`` in place of the family's ``template``
    (a PartialNet backbone dict), returning the same stages (``out_indices``); random
    weights (speed and memory do not depend on the values)."""
    out_indices = tuple(template.get('out_indices', (0, 1, 2, 3)))
    if name in PARTIALNET_ARCHS:
        return dict(copy.deepcopy(template), arch=name, init_cfg=None)
    if name in RESNET_DEPTHS:
        return dict(type='mmdet.ResNet', depth=RESNET_DEPTHS[name], num_stages=4,
                    out_indices=out_indices, frozen_stages=-1, style='pytorch',
                    norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                    init_cfg=None)
    if name.startswith('fasternet_'):
        require_timm()
        return dict(type='mmpretrain.TIMMBackbone', model_name=name, features_only=True,
                    pretrained=False, out_indices=out_indices)
    raise ValueError(f'unknown backbone {name!r}; choose from {backbone_names()}')


def _single_process_norms(value, gn_groups: Optional[int] = None):
    """``value`` with every ``SyncBN`` norm config replaced by ``BN`` (one process) and,
    with ``gn_groups``, every GroupNorm's ``num_groups`` set to it."""
    if isinstance(value, dict):
        out = {k: _single_process_norms(v, gn_groups) for k, v in value.items()}
        if out.get('type') == 'SyncBN':
            out['type'] = 'BN'
        if out.get('type') == 'GN' and gn_groups:
            out['num_groups'] = gn_groups
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_single_process_norms(v, gn_groups) for v in value)
    return value


def backbone_channels(cfg_backbone: dict, scope: str) -> List[int]:
    """Channels of the outputs of a backbone config, from a forward pass at 64 x 64."""
    from mmengine.registry import MODELS
    import mmdet.models  # noqa: F401  (registers mmdet.ResNet)
    import mmpretrain.models  # noqa: F401  (registers mmpretrain.TIMMBackbone)
    with scope_of(scope):
        backbone = MODELS.build(copy.deepcopy(cfg_backbone))
    backbone.eval()  # not chained: mmdet's ResNet.train() returns None
    with torch.no_grad():
        outputs = backbone(torch.zeros(1, 3, 64, 64))
    return [int(o.shape[1]) for o in outputs]


def peer_config(family: str, name: str, cfg_options=None):
    """The family's config with backbone ``name`` and the neck widths it needs."""
    cfg = load_config(project_file(FAMILIES[family].config), cfg_options)
    scope = config_scope(cfg)
    model = _single_process_norms(cfg.model.to_dict(), FAMILIES[family].gn_groups)
    model['backbone'] = backbone_cfg(name, model['backbone'])
    model['neck']['in_channels'] = backbone_channels(model['backbone'], scope)
    cfg.model = model
    return cfg


# ---------------------------------------------------------------------------- one model
class PeerModel:
    """One family's model with one backbone: its eval-mode inference form and a training
    copy with the same starting weights."""

    def __init__(self, family: str, name: str, cfg_options=None, seed: int = 0,
                 hw: Optional[Tuple[int, int]] = None):
        self.family, self.name = family, name
        self.cfg = peer_config(family, name, cfg_options)
        self.scope = config_scope(self.cfg)
        self.hw = tuple(hw or FAMILIES[family].hw)
        torch.manual_seed(seed)
        self.train_model = build_config_model(self.cfg).train()
        self.params = sum(p.numel() for p in self.train_model.parameters())
        self.infer_model = fastest_inference_form(copy.deepcopy(self.train_model).eval())

    def flops(self) -> int:
        images = torch.zeros(1, 3, *self.hw)
        model = copy.deepcopy(self.train_model).eval()
        with torch.no_grad():
            return int(count_flops(TensorForward(model, self.scope, self.hw),
                                   (images, ))['flops'])

    def backbone_neck_step(self) -> Callable[[], None]:
        images = torch.randn(1, 3, *self.hw)

        def step():
            with torch.no_grad(), scope_of(self.scope):
                self.infer_model.extract_feat(images)

        return step

    def full_step(self) -> Callable[[], None]:
        images = torch.randn(1, 3, *self.hw)
        samples = synthetic_data_samples(self.scope, 1, self.hw)

        def step():
            with torch.no_grad(), scope_of(self.scope):
                self.infer_model(images, samples, mode='tensor')

        return step

    def training_step(self, batch: int) -> Callable[[], None]:
        """Forward with the family's losses on synthetic ground truth, backward, AdamW."""
        model = self.train_model
        with scope_of(self.scope):
            packed = synthetic_batch(self.scope, batch, self.hw,
                                     FAMILIES[self.family].with_mask)
            data = model.data_preprocessor(packed, True)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=1e-6)

        def step():
            with scope_of(self.scope):
                losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step


def synthetic_batch(scope: str, batch: int, hw: Tuple[int, int],
                    with_mask: bool = False) -> dict:
    """A packed batch with ground truth for ``mode='loss'``: boxes and labels (and masks
    with ``with_mask``) for mmdet (``mmdet.testing.demo_mm_inputs``), a label map for mmseg;
    fixed seed."""
    torch.manual_seed(0)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch, [[3, *hw]] * batch, num_items=[5] * batch,
                              num_classes=80, with_mask=with_mask)
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for sample in synthetic_data_samples(scope, batch, hw):
            sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, *hw)))
            samples.append(sample)
        return dict(inputs=[torch.randint(0, 256, (3, *hw), dtype=torch.uint8)
                            for _ in range(batch)],
                    data_samples=samples)
    raise ValueError(f'no synthetic ground truth for {scope!r}')


# ---------------------------------------------------------------------------- a run
def benchmark_family(family: str, names: Sequence[str], warmup: int, runs: int,
                     train_batch: int = 2, train_runs: Optional[int] = None,
                     flops: bool = True, train: bool = True, memory: bool = True,
                     cfg_options=None, hw: Optional[Tuple[int, int]] = None,
                     progress: Optional[Callable[[str], None]] = None) -> List[Dict]:
    """One row per backbone of ``family``: params, FLOPs, latencies, training step, memory.

    ``runs`` interleaved rounds after ``warmup`` untimed passes time the inference forms;
    ``train_runs`` (default ``runs``) the training steps, all models in the same rounds.
    ``hw``: (H, W) instead of the family's size.
    """
    if family not in FAMILIES:
        raise ValueError(f'unknown family {family!r}; choose from {list(FAMILIES)}')
    say = progress or (lambda message: None)
    models = []
    for name in names:
        say(f'{family}: building {display_name(name)}')
        models.append(PeerModel(family, name, cfg_options, hw=hw))
    rows = [OrderedDict(family=FAMILIES[family].title, backbone=display_name(m.name),
                        input='{}x{}'.format(*m.hw), params_m=m.params / 1e6)
            for m in models]
    if flops:
        for row, model in zip(rows, models):
            say(f'{family}: FLOPs of {row["backbone"]}')
            row['gflops'] = model.flops() / 1e9
    say(f'{family}: inference, {runs} interleaved rounds')
    steps = [m.backbone_neck_step() for m in models] + [m.full_step() for m in models]
    seconds = time_interleaved(steps, torch.device('cpu'), warmup, runs)
    for i, row in enumerate(rows):
        row['backbone_neck_ms'] = seconds[i] * 1e3
        row['full_ms'] = seconds[len(models) + i] * 1e3
    for model in models:
        model.infer_model = None  # memory for the training copies
    if train:
        say(f'{family}: training steps (batch {train_batch})')
        train_steps = [m.training_step(train_batch) for m in models]
        seconds = time_interleaved(train_steps, torch.device('cpu'), min(warmup, 1),
                                   train_runs or runs)
        for row, step, s in zip(rows, train_steps, seconds):
            row['train_batch'] = train_batch
            row['train_step_s'] = s
            if memory:
                row['peak_mb'] = peak_step_memory(step, torch.device('cpu')) / 2**20
    return _with_ratios(rows)


def run_peers(families: Sequence[str], names: Sequence[str], warmup: int, runs: int,
              train_batch: int = 2, train_runs: Optional[int] = None, flops: bool = True,
              train: bool = True, memory: bool = True, cfg_options=None,
              hw: Optional[Tuple[int, int]] = None,
              json_path: Optional[str] = None) -> Tuple[str, list]:
    """:func:`benchmark_family` for each family, progress printed; ``(header, rows)``.

    ``json_path``: the rows so far are written there after every family, so that a long run
    cut short keeps the families it finished.
    """
    training = (f', batch-{train_batch} training steps ({train_runs or runs} rounds)'
                if train else '')
    header = (f'# whole models: batch-1 inference{training}; '
              f'{machine_description(torch.device("cpu"))}; median of {runs} interleaved '
              f'rounds after {warmup} warm-up; fp32')
    rows = []
    for family in families:
        rows += benchmark_family(family, names, warmup, runs, train_batch, train_runs,
                                 flops, train, memory, cfg_options, hw,
                                 progress=lambda m: print(f'[peers] {m}', flush=True))
        write_json_report(json_path, header, rows)
    return header, rows


def _with_ratios(rows: List[Dict]) -> List[Dict]:
    """Each row's speed relative to the family's first row (how many times faster it is)."""
    if not rows:
        return rows
    first = rows[0]
    for row in rows:
        for key in ('backbone_neck_ms', 'full_ms', 'train_step_s'):
            if row.get(key) and first.get(key):
                row[key.rsplit('_', 1)[0] + '_vs_first'] = first[key] / row[key]
    return rows


COLUMNS = (('family', 'family'), ('backbone', 'backbone'), ('input', 'input'),
           ('params (M)', 'params_m'), ('GFLOPs', 'gflops'),
           ('backbone+neck ms', 'backbone_neck_ms'), ('full ms', 'full_ms'),
           ('train step s', 'train_step_s'), ('peak MB', 'peak_mb'))


def format_peers_table(rows: List[Dict], header: Optional[str] = None) -> str:
    """Rows as a Markdown table with the columns any row has."""
    columns = [(t, k) for t, k in COLUMNS if any(k in r for r in rows)]

    def cell(row, key):
        value = row.get(key)
        if value is None:
            return '-'
        if isinstance(value, float):
            return f'{value:.1f}' if value >= 10 else f'{value:.2f}'
        return str(value)

    return markdown_table([t for t, _ in columns],
                          [[cell(r, k) for _, k in columns] for r in rows], header)


__all__ = ['FAMILIES', 'DEFAULT_BACKBONES', 'backbone_names', 'display_name', 'backbone_cfg',
           'add_arguments', 'check_arguments',
           'peer_config', 'PeerModel', 'benchmark_family', 'run_peers', 'format_peers_table',
           'fastest_inference_form', 'synthetic_batch']
