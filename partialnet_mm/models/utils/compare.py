"""Checking that two forms of a backbone compute the same function."""
import torch
import torch.nn as nn


def max_relative_difference(reference: nn.Module, candidate: nn.Module,
                            inputs: torch.Tensor) -> float:
    """Largest ``max|candidate - reference| / max|reference|`` over the outputs (eval, no grad).

    Both modules return a tensor or a tuple of tensors for ``inputs``.
    """
    with torch.no_grad():
        refs, outs = reference(inputs), candidate(inputs)
    if isinstance(refs, torch.Tensor):
        refs, outs = (refs, ), (outs, )
    return max(((o - r).abs().max() / r.abs().max().clamp(min=1e-30)).item()
               for o, r in zip(outs, refs))


def check_input(backbone: nn.Module, seed: int = 0) -> torch.Tensor:
    """A random, non-square batch of two for ``backbone`` (7 x 5 times its total stride)."""
    stride = backbone.total_stride
    return torch.randn(2, backbone.in_channels, 7 * stride, 5 * stride,
                       generator=torch.Generator().manual_seed(seed))
