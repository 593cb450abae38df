"""Speed and memory of PartialNet models: inference and training steps, forms side by side.

Inference: images/s at a batch size and ms per image at batch 1 for the ``naive`` form (the
authors' formulation: split and concatenate, every BN separate, ``torch.std_mean``, NCHW) and
the ``fused`` form (``switch_to_deploy()``).

Training: images/s of one step (forward, backward, optimizer) and its peak memory for the
``naive`` form and the training path (``ours``), optionally also with activation
checkpointing (``ours+cp``, ``with_cp=True``).

The ``naive`` form is our re-implementation of the authors' formulation, which is slower
than their own code. With the authors' code (a clone of haiduo/PartialNet,
:mod:`~partialnet_mm.tooling.authors_code`), an arch is also timed in the ``authors`` form:
their model with the same weights; speed-ups are then relative to it.

The forms of one model are timed in interleaved rounds (every round times each once, in
rotating order), so a load change on a shared machine affects them alike and their ratio
stays fair; the models of one run are timed one after another. Every figure is a median.
Peak memory is what one training step allocates at its peak beyond what was held before it
(parameters, gradients and optimizer state are held already): the allocator's statistics on
a GPU, the profiler's allocation events on the CPU (:func:`peak_step_memory`).
"""
import copy
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from ..analysis.models import (build_arch_model, build_config_model, default_input_shape,
                               find_backbones, switch_model_to_deploy,
                               synthetic_data_samples)
from ..analysis.report import machine_description, markdown_table
from ..analysis.timing import time_interleaved
from ..models import set_naive_forward
from ..runner.config import config_scope, load_config, scope_of
from .authors_code import authors_model

INFERENCE_FORMS = ('authors', 'naive', 'fused')
TRAINING_FORMS = ('authors', 'naive', 'ours', 'ours+cp')


class Target:
    """One form of one model to time: how to build its inputs and run it."""

    def __init__(self, name: str, form: str, model: nn.Module, scope: Optional[str],
                 hw: Tuple[int, int], mode: str = 'tensor', plain_call: bool = False):
        self.name, self.form, self.model = name, form, model
        self.scope, self.hw, self.mode = scope, hw, mode
        self.params = sum(p.numel() for p in model.parameters())
        self.is_backbone = scope is None  # a bare backbone
        # model(images): a bare backbone, or the authors' classifier (not an mmpretrain one)
        self.plain_call = plain_call or self.is_backbone

    def inputs(self, batch: int, device) -> tuple:
        images = torch.randn(batch, 3, *self.hw, device=device)
        if self.plain_call:
            return (images, )
        return images, synthetic_data_samples(self.scope, batch, self.hw)

    def forward(self, inputs: tuple):
        if self.plain_call:
            return self.model(*inputs)
        with scope_of(self.scope):
            return self.model(*inputs, mode=self.mode)


# ---------------------------------------------------------------------------- building
class Source:
    """A model a run times, by PartialNet arch or by config.

    Args:
        arch (str, optional): A PartialNet arch, built as ``kind``.
        kind (str): ``'backbone'`` or ``'classifier'``.
        config (str, optional): A config file instead of ``arch``.
        cfg_options (dict | list[str], optional): Overrides of ``config``.
        checkpoint (str, optional): Weights for the config's model.
        shape (tuple, optional): Input (H, W); default 224 x 224 for an arch, the config's
            test scale for a config.
        authors (module, optional): The authors' ``models/partialnet.py``
            (:func:`~partialnet_mm.tooling.authors_code.load_authors_partialnet`), for the
            ``authors`` form of an arch.
    """

    def __init__(self, arch: Optional[str] = None, kind: str = 'backbone',
                 config: Optional[str] = None, cfg_options=None,
                 checkpoint: Optional[str] = None, shape: Optional[Tuple[int, int]] = None,
                 authors=None):
        self.arch, self.kind, self.config = arch, kind, config
        self.cfg_options, self.checkpoint, self.authors = cfg_options, checkpoint, authors
        if arch is not None:
            self.name = f'{arch} {kind}'
            self.scope = 'mmpretrain' if kind == 'classifier' else None
            self.hw = shape or (224, 224)
        else:
            cfg = load_config(config, cfg_options)
            self.name, self.scope = config, config_scope(cfg)
            self.hw = shape or default_input_shape(cfg)

    def build(self, with_cp: bool = False) -> nn.Module:
        """The model, in eval mode, on the CPU."""
        if self.arch is not None:
            return build_arch_model(self.arch, self.kind, with_cp=with_cp)
        cfg = load_config(self.config, self.cfg_options)
        if with_cp:
            cfg.model.backbone.with_cp = True
        return build_config_model(cfg, self.checkpoint)

    def build_authors(self, ours: nn.Module) -> nn.Module:
        """The authors' model of this arch with the weights of ``ours``, in eval mode."""
        if self.arch is None or self.authors is None:
            raise ValueError(f'{self.name}: the authors\' form needs an --arch and '
                             f'--authors-code (configs are timed in our forms only)')
        return authors_model(self.authors, self.arch, self.kind, ours)


def model_sources(archs: Sequence[str] = (), kind: str = 'backbone',
                  configs: Sequence[str] = (), cfg_options=None,
                  checkpoints: Optional[Sequence[str]] = None,
                  shape: Optional[Tuple[int, int]] = None, authors=None) -> List[Source]:
    """The :class:`Source` of every arch and config of a run (``authors``: the authors'
    module, which the archs are also timed in)."""
    return [Source(arch=a, kind=kind, shape=shape, authors=authors) for a in archs] + [
        Source(config=c, cfg_options=cfg_options, shape=shape,
               checkpoint=checkpoints[i] if checkpoints else None)
        for i, c in enumerate(configs)]


def inference_targets(sources: List[Source], forms: Sequence[str], device,
                      memory_format: str = 'auto', mode: str = 'tensor') -> List[Target]:
    """Every (model, form) of an inference run, on ``device``, in eval mode."""
    targets = []
    for source in sources:
        name, scope, hw = source.name, source.scope, source.hw
        model = source.build().to(device)
        fusable = all(hasattr(b, 'switch_to_deploy') for b in find_backbones(model))
        for form in forms:
            if form == 'authors':
                if source.arch is None:
                    continue  # a config: our forms only
                targets.append(Target(name, form, source.build_authors(model).to(device),
                                      scope, hw, mode, plain_call=True))
            elif form == 'naive':
                targets.append(Target(name, form, set_naive_forward(copy.deepcopy(model)),
                                      scope, hw, mode))
            elif fusable:
                fused = switch_model_to_deploy(copy.deepcopy(model), memory_format)
                targets.append(Target(name, form, fused, scope, hw, mode))
            else:
                print(f'[benchmark] {name}: its backbone has no inference form; no fused row')
    return targets


def training_targets(sources: List[Source], forms: Sequence[str], device) -> List[Target]:
    """Every (model, form) of a training run, on ``device``, in training mode; all forms of
    a model start from the same weights."""
    targets = []
    for source in sources:
        reference = source.build()
        for form in forms:
            if form == 'authors':
                if source.arch is not None:
                    targets.append(Target(source.name, form,
                                          source.build_authors(reference).to(device).train(),
                                          source.scope, source.hw, plain_call=True))
                continue
            model = source.build(with_cp=form.endswith('+cp'))
            model.load_state_dict(reference.state_dict())
            set_naive_forward(model, form == 'naive')
            targets.append(Target(source.name, form, model.to(device).train(), source.scope,
                                  source.hw))
    return targets


# ----------------------------------------------------------------------------- steps
def _autocast(device, amp: bool):
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type,
                          dtype=torch.float16 if device.type == 'cuda' else torch.bfloat16)


def inference_step(target: Target, batch: int, device, amp: bool) -> Callable[[], None]:
    inputs = target.inputs(batch, device)

    def step():
        with torch.no_grad(), _autocast(device, amp):
            target.forward(inputs)

    return step


def training_step(target: Target, batch: int, device, amp: bool) -> Callable[[], None]:
    """Forward, a loss, backward and an AdamW step of ``target``.

    The loss of a classifier is its cross-entropy; a bare backbone's outputs go through the
    1x1 lateral convolutions of an FPN neck (256 channels, the same weights for every form)
    whose outputs are averaged, so its gradients arrive as a neck's would.
    """
    inputs = target.inputs(batch, device)
    params = [p for p in target.model.parameters() if p.requires_grad]
    laterals = None
    if target.is_backbone:
        torch.manual_seed(0)
        laterals = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in target.model.out_channels)
        laterals.to(device)
        params += list(laterals.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    labels = torch.randint(0, 10, (batch, ), device=device)

    def step():
        with _autocast(device, amp):
            outputs = target.forward(inputs)
            if target.scope == 'mmpretrain':
                loss = F.cross_entropy(outputs.float(), labels)
            elif laterals is not None:
                loss = sum(lat(o).float().mean() for lat, o in zip(laterals, outputs))
            else:
                outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
                loss = sum(o.float().mean() for o in _tensors(outputs))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _tensors(outputs) -> List[torch.Tensor]:
    found = []
    for o in outputs:
        found += _tensors(o) if isinstance(o, (tuple, list)) else [o]
    return found


# ---------------------------------------------------------------------------- memory
def peak_step_memory(step: Callable[[], None], device) -> float:
    """Peak bytes allocated during one call of ``step`` beyond what was held before it.

    CUDA: the caching allocator's statistics. CPU: torch keeps none, so the step runs once
    under the profiler with ``profile_memory=True`` and the allocation events (sizes and
    frees, in time order) are summed; their running maximum is the peak.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == '[memory]'), key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return float(peak)


# ---------------------------------------------------------------------------- runs
def benchmark_inference(sources: List[Source], forms: Sequence[str], batch: int, device,
                        warmup: int, runs: int, amp: bool = False, memory_format='auto',
                        mode: str = 'tensor', latency: bool = True) -> List[Dict]:
    """Throughput at ``batch`` and latency at batch 1 of each (model, form)."""
    targets = inference_targets(sources, forms, device, memory_format, mode)
    rows = []
    for name in dict.fromkeys(t.name for t in targets):
        group = [t for t in targets if t.name == name]
        speed = time_interleaved([inference_step(t, batch, device, amp) for t in group],
                                 device, warmup, runs)
        lat = time_interleaved([inference_step(t, 1, device, amp) for t in group], device,
                               warmup, runs) if latency else [None] * len(group)
        for t, s, lt in zip(group, speed, lat):
            rows.append(dict(model=t.name, form=t.form, params_m=t.params / 1e6,
                             input=f'{t.hw[0]}x{t.hw[1]}', batch=batch,
                             throughput=batch / s,
                             latency_ms=None if lt is None else lt * 1e3))
    return _with_ratios(rows, None if 'authors' in forms else 'fused', _base_form(forms))


def _base_form(forms: Sequence[str]) -> str:
    """The form speed-ups are relative to: the authors' code when it is timed, else our
    naive re-implementation of their formulation."""
    return 'authors' if 'authors' in forms else 'naive'


def benchmark_training(sources: List[Source], forms: Sequence[str], batch: int, device,
                       warmup: int, runs: int, amp: bool = False,
                       memory: bool = True) -> List[Dict]:
    """Images/s of a training step and its peak memory for each (model, form)."""
    rows = []
    for source in sources:
        group = training_targets([source], forms, device)
        for t in group:
            t.step = training_step(t, batch, device, amp)
        speed = time_interleaved([t.step for t in group], device, warmup, runs)
        for t, s in zip(group, speed):
            peak = peak_step_memory(t.step, device) if memory else None
            rows.append(dict(model=t.name, form=t.form, params_m=t.params / 1e6,
                             input=f'{t.hw[0]}x{t.hw[1]}', batch=batch,
                             throughput=batch / s, step_ms=s * 1e3,
                             peak_mb=None if peak is None else peak / 2**20))
        del group
    return _with_ratios(rows, None, _base_form(forms))


def _with_ratios(rows: List[Dict], only_form: Optional[str],
                 base_form: str = 'naive') -> List[Dict]:
    """``speedup`` (and ``memory_ratio``) of each row against its model's ``base_form``
    row."""
    naive = {r['model']: r for r in rows if r['form'] == base_form}
    for r in rows:
        base = naive.get(r['model'])
        if base is None or r is base or (only_form and r['form'] != only_form):
            continue
        r['speedup'] = r['throughput'] / base['throughput']
        if r.get('peak_mb') is not None and base.get('peak_mb'):
            r['memory_ratio'] = r['peak_mb'] / base['peak_mb']
    return rows


COLUMNS = (('model', 'model'), ('form', 'form'), ('params (M)', 'params_m'),
           ('input', 'input'), ('batch', 'batch'), ('img/s', 'throughput'),
           ('ms (b1)', 'latency_ms'), ('ms/step', 'step_ms'), ('peak MB', 'peak_mb'),
           ('speed-up', 'speedup'), ('memory', 'memory_ratio'))


def format_table(rows: List[Dict], header: str) -> str:
    """Rows as a Markdown table with the columns any row has."""
    columns = [(title, key) for title, key in COLUMNS if any(key in r for r in rows)]

    def cell(row, key):
        value = row.get(key)
        if value is None:
            return '-'
        if key in ('speedup', 'memory_ratio'):
            return f'{value:.2f}x'
        if isinstance(value, float):
            return f'{value:.1f}' if value >= 10 else f'{value:.2f}'
        return str(value)

    return markdown_table([title for title, _ in columns],
                          [[cell(r, key) for _, key in columns] for r in rows], header)


def run_header(device, runs: int, warmup: int, amp: bool, what: str) -> str:
    return (f'# {what} on {machine_description(device)}; median of {runs} interleaved runs '
            f'after {warmup} warm-up; {"AMP" if amp else "fp32"}')
