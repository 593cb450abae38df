"""The authors' formulation of the training forward, for comparisons.

Layers whose training forward is computed faster than the authors' code wrote it declare a
class attribute ``naive = False``; with ``naive = True`` they compute it the authors' way
(``torch.std_mean``, 1x1 convolutions through ``nn.Conv2d``, split and concatenate). Both give
the same outputs and gradients up to float round-off; ``tools/benchmark.py --train`` times
them side by side and ``tests/test_training_path.py`` compares their gradients.
"""
from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn


def set_naive_forward(model: nn.Module, naive: bool = True) -> nn.Module:
    """Switch every layer of ``model`` that has both forms to the authors' (or back)."""
    for module in model.modules():
        if hasattr(type(module), 'naive'):
            module.naive = naive
    return model


@contextmanager
def naive_forward(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in the authors' formulation inside the ``with`` block; on leaving it, every
    layer gets back the form it had."""
    before = {m: m.naive for m in model.modules() if hasattr(type(m), 'naive')}
    set_naive_forward(model)
    try:
        yield model
    finally:
        for module, naive in before.items():
            module.naive = naive
