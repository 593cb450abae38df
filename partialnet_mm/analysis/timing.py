"""Timing steps side by side: what the speed figures of the deploy check and the benchmarks
are measured with."""
import statistics
import time
from typing import Callable, List

import torch


def synchronizer(device) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA); nothing to wait for on the CPU."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else \
        (lambda: None)


def time_interleaved(steps: List[Callable[[], None]], device, warmup: int,
                     runs: int) -> List[float]:
    """Median seconds of each step, timed in interleaved rounds (rotating order)."""
    sync = synchronizer(device)
    times: List[List[float]] = [[] for _ in steps]

    def run(i: int) -> float:
        sync()
        start = time.perf_counter()
        steps[i]()
        sync()
        return time.perf_counter() - start

    for i in range(len(steps)):
        for _ in range(warmup):
            run(i)
    for r in range(runs):
        order = list(range(len(steps)))
        for i in order[r % len(order):] + order[:r % len(order)]:
            times[i].append(run(i))
    return [statistics.median(t) for t in times]
