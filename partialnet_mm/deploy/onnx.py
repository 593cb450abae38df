"""ONNX export of a PartialNet backbone (its feature maps) or classifier (its logits).

Batch, height and width are dynamic: the iRPE bias of the self-attention stage depends on the
feature size, and its bucket indices are computed inside the graph from it, so one file serves
every input size (sides at least 32 px). The TorchScript exporter is used (``dynamo=False``;
the dynamo exporter needs the ``onnxscript`` package, not part of this stack).
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.runner import load_checkpoint

from ..analysis.models import (build_arch_model, build_config_model, find_backbones,
                               switch_model_to_deploy)
from ..runner.config import config_scope, load_config


class TensorOutputs(nn.Module):
    """What is exported: a backbone's feature tuple, or a classifier's logits (mode='tensor')."""

    def __init__(self, model: nn.Module, is_classifier: bool):
        super().__init__()
        self.model = model
        self.is_classifier = is_classifier

    def forward(self, x: torch.Tensor):
        if self.is_classifier:
            return self.model(x, mode='tensor')
        return tuple(self.model(x))


def build_exported_module(arch: Optional[str] = None, config: Optional[str] = None,
                          kind: str = 'backbone', checkpoint: Optional[str] = None,
                          backbone_only: bool = False,
                          fuse: bool = False) -> Tuple[TensorOutputs, List[str]]:
    """The module to export (eval mode, folded if ``fuse``) and its output names.

    From ``arch`` (built as ``kind``) or ``config``: detection and segmentation configs export
    their backbone (the rest of such a model is mmdeploy's business), classification configs
    the whole classifier (its backbone with ``backbone_only``).
    """
    if (arch is None) == (config is None):
        raise ValueError('give exactly one of arch and config')
    if arch is not None:
        model = build_arch_model(arch, kind)
        if checkpoint:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        is_classifier = kind == 'classifier'
    else:
        cfg = load_config(config)
        model = build_config_model(cfg, checkpoint)
        is_classifier = config_scope(cfg) == 'mmpretrain' and not backbone_only
        if not is_classifier:
            backbones = find_backbones(model)
            if not backbones:
                raise ValueError(f'{config}: the model has no backbone to export')
            model = backbones[0]
    if fuse:
        switch_model_to_deploy(model, memory_format='contiguous')
    module = TensorOutputs(model, is_classifier).eval()
    names = ['logits'] if is_classifier else [f'feat{i}' for i in model.out_indices]
    return module, names


def export(module: TensorOutputs, output_names: Sequence[str], path: str,
           example: torch.Tensor, opset: int = 17, dynamic: bool = True) -> None:
    """``torch.onnx.export`` (TorchScript exporter), dynamic batch / height / width."""
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in output_names:
            dynamic_axes[name] = {0: 'batch'} if name == 'logits' else {
                0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    with warnings.catch_warnings(), torch.no_grad():
        # shape checks in Python are traced as constants; the graph itself is dynamic
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*dynamo=False.*')
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        torch.onnx.export(module, (example, ), path, dynamo=False, input_names=['input'],
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True)


def max_relative_error(module: nn.Module, path: str, inputs: torch.Tensor) -> float:
    """max |onnxruntime - PyTorch| / max |PyTorch| over all outputs for ``inputs``."""
    import onnxruntime as ort  # optional dependency: only verification needs it
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = module(inputs)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = session.run(None, {'input': inputs.numpy()})
    worst = 0.
    for ours, ref in zip(got, expected):
        ref = ref.float().numpy()
        if ours.shape != ref.shape:
            raise AssertionError(f'ONNX output shape {ours.shape} != PyTorch {ref.shape}')
        worst = max(worst, float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12)))
    return worst


def verification_shapes(batch: int, hw: Tuple[int, int], static: bool) -> List[tuple]:
    """The export shape and, unless static, a second one (another batch, sides and aspect)."""
    shapes = [(batch, 3, *hw)]
    if not static:
        shapes.append((batch + 1, 3, hw[0] + 64, max(32, hw[1] - 32)))
    return shapes


def export_onnx(output: str, arch: Optional[str] = None, config: Optional[str] = None,
                kind: str = 'backbone', checkpoint: Optional[str] = None,
                backbone_only: bool = False, fuse: bool = False,
                hw: Tuple[int, int] = (224, 224), batch_size: int = 1, static: bool = False,
                opset: int = 17, verify: bool = False) -> Dict:
    """Export to ``output``; with ``verify``, compare onnxruntime with PyTorch at the export
    shape and (dynamic exports) a second one. Returns ``output``, ``output_names`` and, when
    verified, ``errors`` (shape -> max |diff| / max |ref|)."""
    module, names = build_exported_module(arch, config, kind, checkpoint, backbone_only, fuse)
    export(module, names, output, torch.randn(batch_size, 3, *hw), opset, dynamic=not static)
    result = dict(output=output, output_names=names)
    if verify:
        result['errors'] = {shape: max_relative_error(module, output, torch.randn(*shape))
                            for shape in verification_shapes(batch_size, hw, static)}
    return result
