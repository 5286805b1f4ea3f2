"""Per-step probability tracks -> detections -> event-level metrics (DESIGN §4).

Conventions every caller relies on:

* Output step ``i`` covers audio ``[i * step_s, (i + 1) * step_s)``. A detection fired at
  step ``i`` is stamped at the END of that step, ``(i + 1) * step_s`` (``step_time_s``): the
  moment a causal detector has heard all the audio that made it fire. Latencies are therefore
  honest, never optimistic by one step.
* Smoothing is a causal moving average over the current and up to ``smoothing_steps - 1``
  past steps. The first steps average only what exists (no zero padding), so a clip that
  opens inside a word is not attenuated.
* A detection fires at a step where the smoothed probability crosses the threshold
  (previous < threshold <= current; the first step counts as crossing if it is already >=),
  and at least ``refractory_s`` (rounded up to whole steps) have passed since the previous
  detection. A crossing inside the refractory period is dropped, not postponed: a track that
  stays high through the end of the refractory period does not fire again.
* Scoring: a trigger word is detected if some detection lies in
  ``[word start, word end + window_after_s]``. Any detection outside every such window is a
  false accept. One detection inside two overlapping windows counts as a hit for both.
  ``hours`` is the whole clip duration (trigger windows are NOT subtracted): FA/h is "per hour
  of audio" as DESIGN says.
* Neither FRR nor FA/h is guaranteed monotonic in the threshold (a lower threshold may fire
  early, outside the window, and its refractory period or a track that stays above the
  threshold then hides the in-window crossing). ``pick_operating_threshold`` follows DESIGN
  literally: the lowest qualifying threshold.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from components.config import DetectionParams

log = logging.getLogger(__name__)

_EVENT_BUDGET = 2_000_000  # crossing events held at once by sweep_thresholds (~100 MB peak)


@dataclass(frozen=True)
class DetectionConfig:
    """How probabilities become detections: params.yaml's trigger_word.detection with the threshold
    evaluation picks (saved with the model), or a command's flags over a model's saved settings."""
    smoothing_steps: int
    refractory_s: float
    threshold: float

    @classmethod
    def from_params(cls, section: DetectionParams, threshold: float) -> "DetectionConfig":
        return cls(smoothing_steps=section.smoothing_steps, refractory_s=section.refractory_s, threshold=threshold)

    def __post_init__(self):  # a model file's settings and a command's flags (params are checked in config.py)
        check_settings(smoothing_steps=self.smoothing_steps, refractory_s=self.refractory_s, threshold=self.threshold)


def check_settings(smoothing_steps=None, refractory_s=None, threshold=None) -> None:
    """A one-line ValueError, starting with the setting's name, for the first given setting unusable."""
    if smoothing_steps is not None and (not isinstance(smoothing_steps, (int, np.integer)) or smoothing_steps < 1):
        raise ValueError(f"smoothing_steps must be an int >= 1, got {smoothing_steps!r}")
    if refractory_s is not None and not (math.isfinite(refractory_s) and refractory_s >= 0):
        raise ValueError(f"refractory_s must be finite and >= 0, got {refractory_s!r}")
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")


@dataclass(frozen=True)
class Detection:
    time_s: float  # end of the step where it fired (see module docstring)
    score: float  # smoothed probability at that step


def step_time_s(step_index, step_s: float):
    """Time stamp of output step ``step_index``: the end of the step. Works on arrays too."""
    return (step_index + 1) * step_s


def refractory_steps(refractory_s: float, step_s: float) -> int:
    """Whole steps that must separate two detections (rounded up, robust to 1.0/0.02 noise)."""
    return max(int(math.ceil(refractory_s / step_s - 1e-9)), 0)


def _check_track(probs, name="probs") -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per step), got shape {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{name} contains NaN or inf")
    return probs


def _check_step(step_s: float) -> float:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be finite and > 0, got {step_s!r}")
    return float(step_s)


def _causal_mean(history: np.ndarray, chunk: np.ndarray, n_seen: int, n: int) -> np.ndarray:
    """Moving average of ``chunk`` given the ``n - 1`` raw values before it (zeros before the
    track starts) and how many steps came before. Sums in a fixed order, so offline and
    streaming give bit-identical results for any chunking."""
    ext = np.concatenate([history, chunk])
    acc = ext[: len(chunk)].copy()
    for k in range(1, n):
        acc += ext[k : k + len(chunk)]
    counts = np.minimum(np.arange(n_seen + 1, n_seen + len(chunk) + 1), n)
    return acc / counts


def smooth(probs: np.ndarray, smoothing_steps: int) -> np.ndarray:
    """Causal moving average over the current and ``smoothing_steps - 1`` past steps."""
    probs = _check_track(probs)
    if smoothing_steps < 1:
        raise ValueError(f"smoothing_steps must be >= 1, got {smoothing_steps}")
    return _causal_mean(np.zeros(smoothing_steps - 1), probs, 0, smoothing_steps)


class StreamingDetector:
    """``detect`` over a stream: feed chunks of any size, get the same detections."""

    def __init__(self, step_s: float, cfg: DetectionConfig):
        self.step_s, self.cfg = _check_step(step_s), cfg
        self._refractory = refractory_steps(cfg.refractory_s, self.step_s)
        self.reset()

    def reset(self) -> None:
        self._history = np.zeros(self.cfg.smoothing_steps - 1)  # last raw probs, for smoothing
        self._n_seen = 0  # steps consumed so far (global index of the next step)
        self._prev = -np.inf  # smoothed value of the previous step
        self._last_fire: int | None = None  # global step index of the last detection

    def process(self, probs_chunk: np.ndarray) -> list[Detection]:
        chunk = _check_track(probs_chunk, "probs_chunk")
        if chunk.size == 0:
            return []
        n = self.cfg.smoothing_steps
        s = _causal_mean(self._history, chunk, self._n_seen, n)
        above = s >= self.cfg.threshold
        prev_above = np.concatenate([[self._prev >= self.cfg.threshold], above[:-1]])
        out = []
        for i in np.flatnonzero(above & ~prev_above):
            g = self._n_seen + int(i)
            if self._last_fire is None or g - self._last_fire >= self._refractory:
                self._last_fire = g
                out.append(Detection(float(step_time_s(g, self.step_s)), float(s[i])))
        if n > 1:
            self._history = np.concatenate([self._history, chunk])[-(n - 1) :]
        self._n_seen += chunk.size
        self._prev = float(s[-1])
        return out


def detect(probs: np.ndarray, step_s: float, cfg: DetectionConfig) -> list[Detection]:
    """Detections in one whole track (offline; identical to ``StreamingDetector``)."""
    return StreamingDetector(step_s, cfg).process(probs)


@dataclass
class EventCounts:
    n_triggers: int
    n_missed: int
    n_false_accepts: int
    hours: float

    @property
    def frr(self) -> float:
        return self.n_missed / self.n_triggers if self.n_triggers else float("nan")

    @property
    def fa_per_hour(self) -> float:
        return self.n_false_accepts / self.hours if self.hours > 0 else float("nan")

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(self.n_triggers + other.n_triggers, self.n_missed + other.n_missed,
                           self.n_false_accepts + other.n_false_accepts, self.hours + other.hours)


def _check_window(window_after_s: float) -> float:
    if not (math.isfinite(window_after_s) and window_after_s >= 0):
        raise ValueError(f"window_after_s must be finite and >= 0, got {window_after_s!r}")
    return float(window_after_s)


def _check_triggers(triggers) -> list[tuple[float, float]]:
    out = [(float(a), float(b)) for a, b in triggers]
    for a, b in out:
        if not (math.isfinite(a) and math.isfinite(b) and b >= a):
            raise ValueError(f"trigger (start, end) must be finite with end >= start, got {(a, b)}")
    return out


def score_clip(detections: list[Detection], triggers: list[tuple[float, float]],
               duration_s: float, window_after_s: float = 1.0) -> EventCounts:
    """Hits, misses and false accepts of one clip (DESIGN §4; conventions in module doc)."""
    triggers, window_after_s = _check_triggers(triggers), _check_window(window_after_s)
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
    times = [d.time_s for d in detections]
    windows = [(a, b + window_after_s) for a, b in triggers]
    n_missed = sum(not any(lo <= t <= hi for t in times) for lo, hi in windows)
    n_fa = sum(not any(lo <= t <= hi for lo, hi in windows) for t in times)
    return EventCounts(len(triggers), n_missed, n_fa, duration_s / 3600.0)


def detection_latencies(detections: list[Detection], triggers: list[tuple[float, float]],
                        window_after_s: float = 1.0) -> list[float]:
    """For each detected trigger (in trigger order): first detection time in its window minus
    the word END, in seconds. Negative when it fired before the word ended."""
    times = sorted(d.time_s for d in detections)
    out = []
    for start, end in _check_triggers(triggers):
        hits = [t for t in times if start <= t <= end + window_after_s]
        if hits:
            out.append(hits[0] - end)
    return out


@dataclass
class DetCurve:
    thresholds: np.ndarray
    frr: np.ndarray  # NaN everywhere when the clips hold no trigger word
    fa_per_hour: np.ndarray
    n_triggers: int
    hours: float
    n_missed: np.ndarray | None = None  # raw counts, per threshold, so curves can be merged
    n_false_accepts: np.ndarray | None = None


def _clip_events(s: np.ndarray, th: np.ndarray, first_step: np.ndarray):
    """(threshold index, flat step) of every crossing: th[j] crosses at step i iff
    s[i-1] < th[j] <= s[i] (s[-1] = -inf at each clip's first step) - same test as detect()."""
    prev = np.empty_like(s)
    prev[1:] = s[:-1]
    prev[first_step] = -np.inf  # includes step 0 whenever s is non-empty
    lo = np.searchsorted(th, prev, side="right")  # first threshold > prev
    hi = np.searchsorted(th, s, side="right")  # first threshold > s
    n = np.maximum(hi - lo, 0)
    steps = np.repeat(np.arange(s.size), n)
    th_idx = np.repeat(lo, n) + np.arange(steps.size) - np.repeat(np.cumsum(n) - n, n)
    return th_idx, steps


def _refractory_filter(keys: np.ndarray, starts: np.ndarray, ends: np.ndarray, gap: int):
    """Greedy refractory filter on sorted crossing keys, for every (threshold, clip) range
    [start, end) at once; loops once per detection of the busiest range, not per threshold."""
    kept = []
    idx = np.searchsorted(keys, starts)
    while idx.size:
        ok = idx < keys.size
        idx, ends = idx[ok], ends[ok]
        hit = keys[idx]
        ok = hit < ends
        hit, ends = hit[ok], ends[ok]
        kept.append(hit)
        idx = np.searchsorted(keys, hit + gap)
    return np.sort(np.concatenate(kept)) if kept else keys[:0]


def _sweep_group(clips, step_s, cfg, th, window_after_s):
    """Missed and false-accept counts per (sorted) threshold for a group of clips."""
    tracks = [smooth(p, cfg.smoothing_steps) for p, _, _ in clips]
    lengths = np.array([t.size for t in tracks], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    s = np.concatenate(tracks) if total else np.zeros(0)
    in_window = np.zeros(total + 1, dtype=np.int64)  # difference array over flat steps
    trig_lo, trig_hi = [], []
    for (_, triggers, _), start, n in zip(clips, starts, lengths):
        times = step_time_s(np.arange(n), step_s)  # same floats as Detection.time_s
        for a, b in _check_triggers(triggers):
            lo = int(np.searchsorted(times, a, side="left"))
            hi = int(np.searchsorted(times, b + window_after_s, side="right"))
            trig_lo.append(start + lo)
            trig_hi.append(start + hi)  # exclusive; lo == hi: no step can ever hit it
            in_window[start + lo] += 1
            in_window[start + hi] -= 1
    in_window = np.cumsum(in_window[:-1]) > 0
    th_idx, steps = _clip_events(s, th, starts[lengths > 0])
    stride = max(total, 1)
    keys = th_idx * stride + steps
    if th.size <= np.iinfo(np.uint16).max:  # events are step-ordered: a stable radix sort on
        keys = keys[np.argsort(th_idx.astype(np.uint16), kind="stable")]  # threshold suffices
    else:
        keys = np.sort(keys)
    ranges = np.arange(th.size)[:, None] * stride
    kept = _refractory_filter(keys, (ranges + starts).ravel(), (ranges + starts + lengths).ravel(),
                              max(refractory_steps(cfg.refractory_s, step_s), 1))
    k_th, k_step = np.divmod(kept, stride)
    n_fa = np.bincount(k_th[~in_window[k_step]], minlength=th.size)
    lo, hi = np.array(trig_lo, dtype=np.int64), np.array(trig_hi, dtype=np.int64)
    hits = (np.searchsorted(kept, ranges + hi, side="left")
            - np.searchsorted(kept, ranges + lo, side="left")) > 0
    return lo.size - hits.sum(axis=1), n_fa, lo.size


def sweep_thresholds(clips: Sequence[tuple[np.ndarray, list[tuple[float, float]], float]],
                     step_s: float, cfg: DetectionConfig, thresholds: np.ndarray,
                     window_after_s: float = 1.0) -> DetCurve:
    """FRR and FA/h over all ``clips`` (probs, triggers, duration_s) at every threshold.

    Equal to running ``detect`` + ``score_clip`` per threshold (``cfg.threshold`` ignored),
    but vectorised: each track is smoothed once, every threshold crossing is enumerated with
    searchsorted, and the refractory filter runs for all thresholds together.
    """
    step_s, window_after_s = _check_step(step_s), _check_window(window_after_s)
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    if not np.all(np.isfinite(thresholds)):
        raise ValueError("thresholds must be finite")
    order = np.argsort(thresholds, kind="stable")
    th = thresholds[order]
    missed, n_fa = np.zeros(th.size, np.int64), np.zeros(th.size, np.int64)
    n_triggers, hours = 0, 0.0
    group, group_events = [], 0
    for i, clip in enumerate(clips):
        if not (math.isfinite(clip[2]) and clip[2] >= 0):
            raise ValueError(f"clip {i}: duration_s must be finite and >= 0, got {clip[2]!r}")
        group.append(clip)
        group_events += len(clip[0]) * max(th.size // 8, 1)  # rough estimate, random tracks
        if group_events >= _EVENT_BUDGET or i == len(clips) - 1:
            m, f, n = _sweep_group(group, step_s, cfg, th, window_after_s)
            missed += m
            n_fa += f
            n_triggers += n
            hours += sum(float(c[2]) for c in group) / 3600.0
            group, group_events = [], 0
    unsort = np.empty_like(order)
    unsort[order] = np.arange(order.size)
    missed, n_fa = missed[unsort], n_fa[unsort]
    with np.errstate(divide="ignore", invalid="ignore"):
        frr = missed / n_triggers if n_triggers else np.full(th.size, np.nan)
        fa = n_fa / hours if hours > 0 else np.full(th.size, np.nan)
    return DetCurve(thresholds, frr, fa, n_triggers, hours, missed, n_fa)


def pick_operating_threshold(curve: DetCurve, target_fa_per_hour: float) -> float:
    """The LOWEST threshold whose FA/h <= target (DESIGN §4). If none qualifies, the highest
    threshold evaluated, with a warning: the caller should widen the sweep."""
    ok = np.asarray(curve.fa_per_hour) <= target_fa_per_hour  # NaN never qualifies
    if ok.any():
        return float(np.min(curve.thresholds[ok]))
    log.warning("no threshold reaches FA/h <= %s; using the highest, %s",
                target_fa_per_hour, float(np.max(curve.thresholds)))
    return float(np.max(curve.thresholds))


def interpolated_threshold(curve: DetCurve, target_fa_per_hour: float) -> float:
    """The threshold where the DET curve's FA/h crosses the target, interpolated linearly between
    the lowest swept threshold that meets the target and the next lower one (which does not), so
    the operating point does not jump with the sweep's grid. The swept threshold itself when it is
    the lowest of the grid, and pick_operating_threshold's fallback when none meets the target."""
    order = np.argsort(curve.thresholds)
    th, fa = np.asarray(curve.thresholds)[order], np.asarray(curve.fa_per_hour)[order]
    ok = np.flatnonzero(fa <= target_fa_per_hour)  # NaN never qualifies
    if not ok.size or ok[0] == 0 or not np.isfinite(fa[ok[0] - 1]):
        return pick_operating_threshold(curve, target_fa_per_hour)
    hi, lo = ok[0], ok[0] - 1
    share = (fa[lo] - target_fa_per_hour) / (fa[lo] - fa[hi])  # fa[lo] > target >= fa[hi]
    return float(th[lo] + share * (th[hi] - th[lo]))


def frr_at_fa_per_hour(curve: DetCurve, fa_per_hour: float) -> float:
    """The FRR a detector reaches at exactly ``fa_per_hour``, read from its DET curve, so that
    two detectors can be compared at the same operating point whatever thresholds they picked.

    The curve's front (the points that no other threshold beats on both FA/h and FRR, "never
    fire", FRR 1 at 0 FA/h, included) is interpolated linearly between the two front points
    around the target. Switching at random between those two thresholds reaches every point of
    that line, so the figure is an operating point, not an artefact of the threshold grid.
    Past the curve's largest FA/h, its lowest FRR; NaN when the clips hold no trigger word."""
    if not curve.n_triggers:
        return float("nan")
    ok = np.isfinite(curve.frr) & np.isfinite(curve.fa_per_hour)
    fa = np.concatenate([[0.0], np.asarray(curve.fa_per_hour)[ok]])
    frr = np.concatenate([[1.0], np.asarray(curve.frr)[ok]])
    order = np.lexsort((frr, fa))  # by FA/h, then FRR
    fa, best = fa[order], np.minimum.accumulate(frr[order])
    front = np.concatenate([[True], best[1:] < best[:-1]])  # each FA/h kept only where FRR drops
    return float(np.interp(fa_per_hour, fa[front], best[front]))


def curve_point(curve: DetCurve, threshold: float) -> tuple[float, float]:
    """(FRR, FA/h) at the evaluated threshold nearest to ``threshold``."""
    i = int(np.argmin(np.abs(curve.thresholds - threshold)))
    return float(curve.frr[i]), float(curve.fa_per_hour[i])


def frame_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Step-level precision, recall, F1 (any shape; labels 0/1). 0.0 where undefined."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} differ in shape")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0/1")
    pred, truth = probs >= threshold, labels == 1
    tp, fp, fn = int(np.sum(pred & truth)), int(np.sum(pred & ~truth)), int(np.sum(~pred & truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def det_curve_rows(curve: DetCurve) -> list[dict]:
    """Rows for DVC plots (CSV/JSON). Non-finite values become None so the JSON stays valid."""
    def num(x):
        return float(x) if math.isfinite(x) else None
    return [{"threshold": num(t), "frr": num(r), "fa_per_hour": num(f)}
            for t, r, f in zip(curve.thresholds, curve.frr, curve.fa_per_hour)]


def plot_det_curve(curves: dict[str, DetCurve], operating: dict[str, float] | None, path) -> None:
    """DET curve PNG: FA/h (x, log; symlog when a curve reaches 0 FA/h) against FRR (y), one
    line per named set, with its operating threshold marked when given."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, works headless

    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    has_zero = False
    for name, curve in curves.items():
        ok = np.isfinite(curve.frr) & np.isfinite(curve.fa_per_hour)
        order = np.argsort(curve.thresholds[ok])
        x, y = curve.fa_per_hour[ok][order], curve.frr[ok][order]
        has_zero |= bool(np.any(x <= 0))
        (line,) = ax.plot(x, y, label=name)
        if operating and name in operating and ok.any():
            frr, fa = curve_point(curve, operating[name])
            ax.plot([fa], [frr], "o", color=line.get_color(),
                    label=f"{name} @ {operating[name]:.3g}: FRR {frr:.3f}, {fa:.2f} FA/h")
    if has_zero:
        ax.set_xscale("symlog", linthresh=0.1)
    else:
        ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("false-reject rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
