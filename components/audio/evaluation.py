"""Event-level evaluation of a trigger-word model on the generated splits (DESIGN §4 "Metrics").

Domain code: probabilities for every clip of a split, the DET curve, the operating
threshold picked on validation, and the figures at that threshold, overall and broken
down by voice family and background kind.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from components.audio import detection as det

# Thresholds swept for the DET curve: a uniform grid plus a fine grid near 1, where the
# low-FA/h operating points of a confident model live.
THRESHOLDS = np.unique(np.concatenate([np.linspace(0.01, 0.99, 99), 1 - np.logspace(-4, -2, 21)]))


@dataclass
class ScoredClip:
    clip_id: str
    probs: np.ndarray
    triggers: list[tuple[float, float]]
    trigger_families: list[str]
    duration_s: float
    background: str
    label_row: int


def score_split(model, data_dir: Path, manifest: pd.DataFrame, clip_ids: list[str],
                batch_size: int = 16) -> list[ScoredClip]:
    """Per-step probabilities of every clip, batched by equal length (either front end's model)."""
    rows = manifest.set_index("clip_id").loc[clip_ids].reset_index()
    scored: list[ScoredClip] = []
    model.eval()
    for start in range(0, len(rows), batch_size):
        batch = rows.iloc[start:start + batch_size]
        waves = [sf.read(str(data_dir / f), dtype="float32")[0] for f in batch["file"]]
        probs = []
        for length in sorted({len(w) for w in waves}):
            same = [i for i, w in enumerate(waves) if len(w) == length]
            out = model.probabilities(np.stack([waves[i] for i in same]))
            probs += list(zip(same, out))
        for (i, p), row in zip(sorted(probs, key=lambda t: t[0]), batch.itertuples()):
            scored.append(ScoredClip(row.clip_id, p.astype(np.float64), [tuple(t) for t in json.loads(row.triggers)],
                                     json.loads(row.trigger_families), float(row.duration_s), row.background,
                                     int(row.label_row)))
    return scored


def det_curve(clips: list[ScoredClip], step_s: float, cfg: det.DetectionConfig, window_after_s: float) -> det.DetCurve:
    return det.sweep_thresholds([(c.probs, c.triggers, c.duration_s) for c in clips], step_s, cfg, THRESHOLDS,
                                window_after_s=window_after_s)


def trigger_hits(detections: list[det.Detection], triggers: list[tuple[float, float]], window_after_s: float) -> list[bool]:
    """For each trigger occurrence, whether a detection fell in [start, end + window]."""
    return [any(s <= d.time_s <= e + window_after_s for d in detections) for s, e in triggers]


def at_threshold(clips: list[ScoredClip], step_s: float, cfg: det.DetectionConfig, window_after_s: float,
                 labels: np.ndarray | None = None) -> dict:
    """FRR, FA/h, latency and breakdowns of one split at cfg.threshold."""
    total = det.EventCounts(0, 0, 0, 0.0)
    per_family: dict[str, list[bool]] = {}
    per_background: dict[str, det.EventCounts] = {}
    latencies: list[float] = []
    misses, false_accepts = [], []
    for clip in clips:
        found = det.detect(clip.probs, step_s, cfg)
        counts = det.score_clip(found, clip.triggers, clip.duration_s, window_after_s)
        total = total + counts
        per_background[clip.background] = per_background.get(clip.background, det.EventCounts(0, 0, 0, 0.0)) + counts
        hits = trigger_hits(found, clip.triggers, window_after_s)
        for family, hit in zip(clip.trigger_families, hits):
            per_family.setdefault(family, []).append(hit)
        latencies += det.detection_latencies(found, clip.triggers, window_after_s)
        if not all(hits):
            misses.append(clip)
        if counts.n_false_accepts:
            false_accepts.append(clip)
    result = {
        "triggers": total.n_triggers, "hours": round(total.hours, 3),
        "frr": _round(total.frr), "fa_per_hour": _round(total.fa_per_hour),
        "false_accepts": total.n_false_accepts,
        "latency_median_s": _round(float(np.median(latencies))) if latencies else None,
        "frr_by_family": {f: _round(1 - float(np.mean(h))) for f, h in sorted(per_family.items())},
        "by_background": {b: {"frr": _round(c.frr), "fa_per_hour": _round(c.fa_per_hour)}
                          for b, c in sorted(per_background.items())},
    }
    if labels is not None:
        labelled = [c for c in clips if c.label_row >= 0]
        if labelled:
            frame = det.frame_metrics(np.concatenate([c.probs for c in labelled]),
                                      np.concatenate([labels[c.label_row] for c in labelled]), cfg.threshold)
            result.update({f"frame_{k}": _round(frame[k]) for k in ("precision", "recall", "f1")})
    result["_misses"], result["_false_accepts"] = misses, false_accepts
    return result


def _round(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)
