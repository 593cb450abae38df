"""Image relative position encoding (iRPE): Euclidean method, "bias" mode, on keys.

Reference: Wu et al., "Rethinking and Improving Relative Position Encoding for Vision
Transformer" (ICCV 2021), as configured by PartialNet (``ratio=20``, ``method='euc'``,
``mode='bias'``, ``rpe_on='k'``, no shared head, no skip token).
"""
import math
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..utils.exporting import is_exporting


def euclidean_bucket_ids(height, width, alpha: float, beta: float, gamma: float,
                         device=None) -> torch.Tensor:
    """Bucket index of every (query, key) pair of an ``height x width`` grid, (L, L) long.

    Computed in float32 in the same order as the authors' implementation so the (rounded)
    indices agree bit for bit. Tensor operations only: ``height`` and ``width`` may be
    symbolic sizes of an exported graph, where the indices are then computed in-graph.
    """
    rows = torch.arange(height, device=device).view(-1, 1).expand(height, width)
    cols = torch.arange(width, device=device).view(1, -1).expand(height, width)
    pos = torch.stack([rows, cols], dim=-1).reshape(-1, 2)  # (L, 2), row-major
    diff = pos[:, None, :] - pos[None, :, :]  # (L, L, 2), int64
    dist = diff.square().sum(-1).float().sqrt().round()
    # Piecewise index: exact (rounded) distance up to alpha, logarithmic beyond it.
    far = dist > alpha
    log_branch = (alpha + torch.log(dist.clamp(min=alpha) / alpha) /
                  math.log(gamma / alpha) * (beta - alpha)).round().clip(max=beta)
    index = torch.where(far, log_branch, dist).long()
    return index + int(beta)


@lru_cache(maxsize=64)
def _euclidean_bucket_ids_cpu(height: int, width: int, alpha: float, beta: float,
                              gamma: float) -> torch.Tensor:
    """:func:`euclidean_bucket_ids` on the CPU, cached per size."""
    return euclidean_bucket_ids(height, width, alpha, beta, gamma).contiguous()


class EuclideanRelativePositionBias(nn.Module):
    """Learned per-head bias on attention logits, indexed by quantised token distance.

    For tokens ``i`` and ``j`` at grid positions ``(r, c)``, ``d = round(|pos_i - pos_j|)``
    is mapped to a bucket: ``d`` itself when ``d <= alpha``, else
    ``min(beta, round(alpha + ln(d / alpha) / ln(gamma / alpha) * (beta - alpha)))``,
    offset by ``beta``. ``bias[h, i, j] = bias_table[h, bucket(i, j)]``.

    Bucket indices depend only on the feature size; they are cached per
    ``(height, width, device)`` and shared by every layer, so any input size works. While
    exporting (ONNX, tracing) they are computed inside the graph from the feature size, so
    an exported model accepts any size too. For inference, :meth:`cached_bias` also keeps the
    gathered bias per feature size.

    Args:
        num_heads (int): Number of attention heads (one table row each).
        ratio (float): iRPE ratio; ``alpha, beta, gamma = ratio, 2 * ratio, 8 * ratio``.
            Defaults to 20.
    """

    def __init__(self, num_heads: int, ratio: float = 20.):
        super().__init__()
        self.num_heads = num_heads
        self.alpha, self.beta, self.gamma = float(ratio), 2. * ratio, 8. * ratio
        self.num_buckets = 2 * int(self.beta) + 1
        self.bias_table = nn.Parameter(torch.zeros(num_heads, self.num_buckets))
        self._device_cache = {}
        self._bias_cache = {}  # see cached_bias
        self._bias_cache_stamp = None

    def bucket_ids(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(L, L) long tensor of bucket indices, L = height * width, on ``device``."""
        key = (height, width, str(device))
        ids = self._device_cache.get(key)
        if ids is None:
            ids = _euclidean_bucket_ids_cpu(height, width, self.alpha, self.beta,
                                            self.gamma).to(device)
            if len(self._device_cache) >= 16:
                self._device_cache.pop(next(iter(self._device_cache)))
            self._device_cache[key] = ids
        return ids

    def forward(self, hw_shape: Tuple[int, int], device=None) -> torch.Tensor:
        """Bias of shape (1, num_heads, L, L) for an ``hw_shape`` token grid."""
        height, width = hw_shape
        device = device or self.bias_table.device
        if is_exporting():
            ids = euclidean_bucket_ids(height, width, self.alpha, self.beta, self.gamma,
                                       device=device)
            return self.bias_table[:, ids].unsqueeze(0)  # no size arithmetic in the graph
        ids = self.bucket_ids(height, width, device)
        length = height * width
        return self.bias_table[:, ids.flatten()].view(1, self.num_heads, length, length)

    def cached_bias(self, hw_shape: Tuple[int, int], device=None,
                    dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """:meth:`forward` for inference, gathered once per feature size and reused.

        Kept per ``(height, width, device, dtype)`` (16 sizes at most) and dropped as soon as
        ``bias_table`` changes (loading weights, moving the module, in-place edits), so it
        never goes stale. No gradient flows through it: use :meth:`forward` for training.
        """
        table = self.bias_table
        stamp = (table.data_ptr(), table._version, table.device)
        if stamp != self._bias_cache_stamp:
            self.clear_bias_cache()
            self._bias_cache_stamp = stamp
        key = (tuple(hw_shape), str(device or table.device), dtype or table.dtype)
        bias = self._bias_cache.get(key)
        if bias is None:
            with torch.no_grad():
                bias = self.forward(hw_shape, device=device).to(key[2]).contiguous()
            if len(self._bias_cache) >= 16:
                self._bias_cache.pop(next(iter(self._bias_cache)))
            self._bias_cache[key] = bias
        return bias

    def clear_bias_cache(self):
        """Forget the biases gathered by :meth:`cached_bias`."""
        self._bias_cache.clear()
        self._bias_cache_stamp = None

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, alpha={self.alpha}, beta={self.beta}, '
                f'gamma={self.gamma}')
