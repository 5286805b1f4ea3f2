"""The promotion gate's verdict and the noise statistics behind it (DESIGN §3).

A figure measured on a finite gate set is an estimate: 800 trigger words measure an FRR of
0.30 only to about +-0.03, and 3 false accepts in 6 hours say little more than "between
0.1 and 1.4 per hour". A challenger takes `champion` only when its advantage is larger
than the noise of both figures, so that one extra miss, or a lucky threshold, never decides. Each task's
`decide` (components/tasks/*/scoring.py) applies these intervals to its own figures and
returns a `GateDecision`. Pure numpy/scipy: no registry, no files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 1000  # percentile bounds of a 95% interval move by ~0.1 se between seeds


@dataclass(frozen=True)
class GateDecision:
    promote: bool  # the challenger takes the alias champion
    reason: str  # one line: why, with the figures compared
    meets_target: bool  # the champion after this decision reaches the task's quality floor
    target_note: str  # one line saying loudly whether it does


def gate_decision(promote: bool, reason: str, challenger: dict, champion: dict | None,
                  meets: Callable[[dict], bool], figure: Callable[[dict], str], target: str) -> GateDecision:
    """The decision, with the quality floor judged on the champion it leaves: the challenger
    when promoted, else the current champion. `meets` tells whether a model's figures reach
    the floor, `figure` words its floor figure and `target` the floor."""
    kept = challenger if promote or champion is None else champion
    who = "this challenger" if kept is challenger else "the current champion, kept"
    ok = bool(meets(kept))
    verdict = "meets the target" if ok else "WARNING: does NOT meet the target"
    return GateDecision(promote, reason, ok, f"champion ({who}) {verdict}: {figure(kept)} (target: {target})")


def _alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return 1.0 - confidence


def wilson_interval(successes: float, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a binomial proportion. `successes` may be
    fractional (a count read by interpolation between two operating points). With no
    trials, nothing is known: (0, 1)."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0.0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials={trials}], got {successes!r}")
    z, n, k = float(stats.norm.ppf(1 - _alpha(confidence) / 2)), float(trials), float(successes)
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * np.sqrt(k * (n - k) / n + z * z / 4)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def poisson_interval(count: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) two-sided interval of a Poisson mean from one observed count; divide
    by the hours of audio for a rate. Zero counts still bound the rate from above."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    alpha = _alpha(confidence)
    low = float(stats.gamma.ppf(alpha / 2, count)) if count > 0 else 0.0
    return low, float(stats.gamma.ppf(1 - alpha / 2, count + 1))


def difference_interval(a: float, a_interval: tuple[float, float], b: float,
                        b_interval: tuple[float, float]) -> tuple[float, float]:
    """Interval of a - b from each estimate's own interval, by square-and-add (Newcombe 1998,
    with Wilson intervals his method 10; "MOVER", Zou & Donner 2008). It counts the noise of
    both figures, so it holds zero when two measurements differ by one event, even at the
    edge of the range, where one interval alone is thin. It treats the two as independent,
    which over-states the noise of two models scored on the same data: the gate errs towards
    keeping the champion."""
    (a_low, a_high), (b_low, b_high) = a_interval, b_interval
    d = a - b
    return (float(d - np.hypot(a - a_low, b_high - b)), float(d + np.hypot(a_high - a, b - b_low)))


def bootstrap_interval(statistic: Callable[..., float], arrays: tuple[np.ndarray, ...], confidence: float = 0.95,
                       seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*arrays)`: the rows of the (equal-length)
    arrays are resampled with replacement. Seeded, so the same data give the same bounds."""
    alpha = _alpha(confidence)
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must be non-empty and of equal length, got {[len(a) for a in arrays]}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        rows = rng.integers(0, n, size=n)
        value = statistic(*(a[rows] for a in arrays))
        if np.isfinite(value):  # undefined on this resample (e.g. ROC AUC of one class): skipped
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
