"""Latency measurement on a shared, noisy CPU: interleaved rounds, median and
spread.

One abstraction for everything that times (the deploy-time execution plans
of :mod:`mmlgc.ops.plans`, ``tools/analysis/benchmark_model.py`` and
``benchmark_ops.py``): the candidates run in rounds, in an order that
rotates from round to round, each timed on the second of two back-to-back
calls (its own data warm in cache), so that load from other processes falls
on every candidate alike and ratios within one run stay meaningful even when
absolute times drift.

The benchmark tools also pin glibc's allocator (:func:`pin_allocator`): with
its defaults a large activation is mmapped on every call and page-faulted in
again (a dense ResNet-18 at 800x1216 spends a quarter of its time there), so
a form's time would depend on what ran before it in the process.
"""
import ctypes
import ctypes.util
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping

#: Relative spread ((q3 - q1) / median) above which a timing is reported as
#: unreliable.
NOISY_SPREAD = 0.15


# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def pin_allocator() -> bool:
    """Keep freed memory in the process for reuse, so that timed calls do
    not page-fault their activations in.

    glibc serves allocations above its (dynamic) mmap threshold with fresh
    mappings and returns them to the system on free; tensors of tens of MB,
    as at detection sizes, then cost a page fault per 4 KiB on every call.
    Turning off mmap allocation and raising the trim threshold to its
    maximum makes every form reuse its buffers after the warm-up call, the
    steady state of a long-running service. Returns False (and changes
    nothing) where the C library is not glibc.
    """
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)
                and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@dataclass
class Timing:
    """Milliseconds of one candidate over the rounds."""
    samples: List[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def quartiles(self) -> tuple:
        """(q1, q3); both the median for fewer than 2 samples."""
        if len(self.samples) < 2:
            return self.median, self.median
        q1, _, q3 = statistics.quantiles(self.samples, n=4,
                                         method='inclusive')
        return q1, q3

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        q1, q3 = self.quartiles
        return (q3 - q1) / self.median if self.median > 0 else 0.0

    def summary(self) -> dict:
        q1, q3 = self.quartiles
        return dict(median_ms=self.median, q1_ms=q1, q3_ms=q3,
                    min_ms=self.min, max_ms=self.max, spread=self.spread,
                    rounds=len(self.samples))


def time_interleaved(candidates: Mapping[str, Callable[[], object]],
                     rounds: int,
                     warmup: int = 1) -> Dict[str, Timing]:
    """Time each zero-argument callable ``rounds`` times, interleaved.

    ``warmup`` untimed calls of each first (allocations, oneDNN primitive
    creation); then per round every candidate, in a rotated order, is called
    twice and the second call is timed.
    """
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    samples = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            candidates[name]()
            start = time.perf_counter()
            candidates[name]()
            samples[name].append(1e3 * (time.perf_counter() - start))
    return {name: Timing(s) for name, s in samples.items()}


def warn_if_noisy(timings: Mapping[str, Timing], what: str,
                  limit: float = NOISY_SPREAD) -> List[str]:
    """Warn (and return the names) of the timings whose relative IQR exceeds
    ``limit``: their ratios should be re-measured."""
    noisy = [name for name, t in timings.items() if t.spread > limit]
    if noisy:
        details = ', '.join(f'{n} {timings[n].spread:.0%}' for n in noisy)
        warnings.warn(
            f'{what}: large spread between rounds ({details} of the median, '
            f'limit {limit:.0%}); the machine is busy, re-measure (more '
            '--rounds) before trusting these ratios', RuntimeWarning,
            stacklevel=2)
    return noisy
