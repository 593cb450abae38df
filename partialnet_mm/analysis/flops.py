"""Parameters and FLOPs through mmengine's analysis (fvcore's counter), attention included.

FLOPs follow the fvcore/mmengine convention papers use: one multiply-add is one FLOP;
convolutions, linear layers, matrix products and norms are counted, element-wise activations
are not. mmengine has no handle for ``scaled_dot_product_attention`` (PartialNet's last
stage) and would skip it; :func:`sdpa_flop_jit` counts its two products.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

from ..models.utils.naive import naive_forward
from ..runner.config import config_scope, load_config, scope_of
from .models import (build_arch_model, build_config_model, default_input_shape,
                     synthetic_data_samples)
from .report import markdown_table


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """FLOPs (multiply-adds) of ``aten::scaled_dot_product_attention``: ``q k^T`` and ``a v``.

    mmengine's (fvcore's) counter has no handle for this operator and would skip it with a
    warning; the authors' implementation computes the same products with ``matmul``, which
    it counts. Softmax, scaling and the bias addition are not counted (as for ``matmul``).
    """
    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch_heads = 1
    for size in q[:-2]:
        batch_heads *= size
    queries, keys = q[-2], k[-2]
    return batch_heads * queries * keys * (q[-1] + v[-1])


def count_flops(model: nn.Module, inputs: tuple) -> dict:
    """Parameters and FLOPs of ``model(*inputs)`` through mmengine's analysis (jit trace).

    FLOPs follow the fvcore/mmengine convention papers use: one multiply-add is one FLOP.
    The network is traced in the authors' formulation (:func:`naive_forward`; the model is
    left in the form it had), so the count is the architecture's, as papers report it, not
    that of an implementation trick (e.g. the training path's analytic BatchNorm, whose
    statistics the tracer does not see).

    Returns:
        dict: ``params``, ``flops`` (with attention), ``attention_flops`` (the
        ``scaled_dot_product_attention`` part mmengine alone would miss), ``analyzer``.
    """
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with naive_forward(model):
        by_operator = analyzer.by_operator()  # traces once; later queries read the result
    return dict(params=parameter_count(model)[''], flops=analyzer.total(),
                attention_flops=by_operator.get('scaled_dot_product_attention', 0),
                analyzer=analyzer)


class TensorForward(nn.Module):
    """A config model's test-mode network as ``module(images)`` (what is traced)."""

    def __init__(self, model: nn.Module, scope: str, hw):
        super().__init__()
        self.model, self.scope = model, scope
        self.data_samples = synthetic_data_samples(scope, 1, hw)

    def forward(self, images: torch.Tensor):
        with scope_of(self.scope):
            return self.model(images, self.data_samples, mode='tensor')


def measure(archs: Sequence[str] = (), configs: Sequence[str] = (), kind: str = 'classifier',
            shape: Optional[Tuple[int, int]] = None, cfg_options=None) -> List[Dict]:
    """Params and FLOPs of each arch (built as ``kind``) and each config, one dict each
    (``model``, ``input``, ``params``, ``flops``, ``attention_flops``, ``analyzer``)."""
    rows = []
    for arch in archs:
        hw = shape or (224, 224)
        model = build_arch_model(arch, kind)
        traced = TensorForward(model, 'mmpretrain', hw) if kind == 'classifier' else model
        rows.append(dict(model=f'{arch} {kind}', input=hw,
                         **count_flops(traced, (torch.randn(1, 3, *hw), ))))
    for path in configs:
        cfg = load_config(path, cfg_options)
        hw = shape or default_input_shape(cfg)
        model = build_config_model(cfg)
        traced = TensorForward(model, config_scope(cfg), hw)
        rows.append(dict(model=path, input=hw, **count_flops(traced, (torch.randn(1, 3, *hw), ))))
    return rows


def format_table(rows: List[Dict]) -> str:
    """The rows of :func:`measure` as a Markdown table."""
    return markdown_table(
        ['model', 'input (HxW)', 'params', 'FLOPs', 'attention FLOPs'],
        [[r['model'], f'{r["input"][0]}x{r["input"][1]}', f'{r["params"] / 1e6:.3f} M',
          f'{r["flops"] / 1e9:.3f} G', f'{r["attention_flops"] / 1e9:.4f} G'] for r in rows],
        '# FLOPs: multiply-adds (mmengine/fvcore convention), attention products included')
