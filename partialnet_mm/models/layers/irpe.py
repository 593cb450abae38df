"""Image relative position encoding (iRPE): Euclidean method, "bias" mode, on keys.

Reference: Wu et al., "Rethinking and Improving Relative Position Encoding for Vision
Transformer" (ICCV 2021), as configured by PartialNet (``ratio=20``, ``method='euc'``,
``mode='bias'``, ``rpe_on='k'``, no shared head, no skip token).
"""
import math
from functools import lru_cache
from typing import Tuple

import torch
import torch.nn as nn


@lru_cache(maxsize=64)
def _euclidean_bucket_ids_cpu(height: int, width: int, alpha: float, beta: float,
                              gamma: float) -> torch.Tensor:
    """Bucket index of every (query, key) pair of an ``height x width`` grid.

    Computed in float32 in the same order as the authors' implementation so the
    (rounded) indices agree bit for bit.
    """
    rows = torch.arange(height).view(height, 1).expand(height, width)
    cols = torch.arange(width).view(1, width).expand(height, width)
    pos = torch.stack([rows, cols], dim=-1).reshape(-1, 2)  # (L, 2), row-major
    diff = pos[:, None, :] - pos[None, :, :]  # (L, L, 2), int64
    dist = diff.square().sum(-1).float().sqrt().round()
    # Piecewise index: exact (rounded) distance up to alpha, logarithmic beyond it.
    far = dist > alpha
    log_branch = (alpha + torch.log(dist.clamp(min=alpha) / alpha) /
                  math.log(gamma / alpha) * (beta - alpha)).round().clip(max=beta)
    index = torch.where(far, log_branch, dist).long()
    return (index + int(beta)).contiguous()


class EuclideanRelativePositionBias(nn.Module):
    """Learned per-head bias on attention logits, indexed by quantised token distance.

    For tokens ``i`` and ``j`` at grid positions ``(r, c)``, ``d = round(|pos_i - pos_j|)``
    is mapped to a bucket: ``d`` itself when ``d <= alpha``, else
    ``min(beta, round(alpha + ln(d / alpha) / ln(gamma / alpha) * (beta - alpha)))``,
    offset by ``beta``. ``bias[h, i, j] = bias_table[h, bucket(i, j)]``.

    Bucket indices depend only on the feature size; they are cached per
    ``(height, width, device)`` and shared by every layer, so any input size works.

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
        ids = self.bucket_ids(height, width, device or self.bias_table.device)
        length = height * width
        return self.bias_table[:, ids.flatten()].view(1, self.num_heads, length, length)

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, alpha={self.alpha}, beta={self.beta}, '
                f'gamma={self.gamma}')
