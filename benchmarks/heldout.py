"""Shared by the held-out benchmarks (real_speech.py, vs_openwakeword.py): score a detector on
positive and negative clips and print its DET curve as FRR at fixed FA/h.

FRR comes from the positive clips (a trigger counts as found by a detection in [start, end + 1 s]),
FA/h from the negative clips only (audio that never holds the phrase), at every threshold of the
same sweep; FRR at a given FA/h is read off that curve by interpolation (detection.frr_at_fa_per_hour).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.audio import detection as det  # noqa: E402
from components.audio.evaluation import THRESHOLDS  # noqa: E402

FA_POINTS = (0.5, 1.0, 2.0, 5.0)
WINDOW_AFTER_S = 1.0


@dataclass
class Clip:
    wave: np.ndarray
    triggers: list[tuple[float, float]]
    kind: str  # background kind, for the breakdown


@dataclass
class Scorer:
    """What a detector needs to be benchmarked: per-step probabilities of a whole wave."""
    name: str
    probs: Callable[[np.ndarray], np.ndarray]
    step_s: float
    cfg: det.DetectionConfig  # smoothing and refractory period (the threshold is swept)


def det_curve(scorer: Scorer, positives: list[Clip], negatives: list[Clip]) -> det.DetCurve:
    tracks = {}
    for name, clips in (("pos", positives), ("neg", negatives)):
        tracks[name] = [(scorer.probs(c.wave).astype(np.float64), c.triggers, len(c.wave) / 16000)
                        for c in tqdm(clips, desc=f"{scorer.name} {name}", unit="clip", leave=False)]
    pos = det.sweep_thresholds(tracks["pos"], scorer.step_s, scorer.cfg, THRESHOLDS, window_after_s=WINDOW_AFTER_S)
    neg = det.sweep_thresholds(tracks["neg"], scorer.step_s, scorer.cfg, THRESHOLDS, window_after_s=WINDOW_AFTER_S)
    return det.DetCurve(THRESHOLDS, pos.frr, neg.fa_per_hour, pos.n_triggers, neg.hours)


def report(name: str, curve: det.DetCurve, threshold: float | None = None) -> dict:
    """Print and return FRR at each FA/h of FA_POINTS (and at the detector's own threshold)."""
    row = {f"frr@{fa:g}": det.frr_at_fa_per_hour(curve, fa) for fa in FA_POINTS}
    text = "  ".join(f"FRR {row[f'frr@{fa:g}']:.3f} at {fa:g} FA/h" for fa in FA_POINTS)
    if threshold is not None:
        frr, fa = det.curve_point(curve, threshold)
        row["own"] = (threshold, frr, fa)
        text += f"  | own threshold {threshold:.4g}: FRR {frr:.3f} at {fa:.2f} FA/h"
    print(f"{name:28s} {text}  ({curve.n_triggers} triggers, {curve.hours:.2f} h of negatives)", flush=True)
    return row


def model_scorer(path: Path) -> tuple[Scorer, float]:
    """A saved detector of this project (either front end), with its own operating settings."""
    from components.audio.model import load_model

    model = load_model(path)
    return Scorer(f"{path.parent.name}/{path.name}", lambda w: model.stream().process(w), model.step_seconds,
                  model.detection_config()), model.threshold
