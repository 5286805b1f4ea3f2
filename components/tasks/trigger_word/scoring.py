"""Trigger word, judging side: event-level evaluation and the registry gate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.config import TriggerWordParams

# ------------------------------------------------------------------------------ evaluate

EVALUATED_FILE = "detector.pt"  # the model with its operating threshold (components/detect.py reads it)
# reported set -> the splits it pools; validation pools its clips with the stream's val half
REPORTED = {"val": ("val", "negative_stream_val"), "test": ("test",),
            "negative_stream_test": ("negative_stream_test",), "test_unseen_voice": ("test_unseen_voice",)}


def evaluate(p: TriggerWordParams, data_dir: Path, split_dir: Path, model_path: Path, detector_out: Path,
             out: Path) -> tuple[dict, dict]:
    """Event-level figures (DESIGN §4 "Metrics"):
    1. scores every clip of val, test, test_unseen_voice and both halves of the negative stream;
    2. picks the operating threshold on validation (val clips + the val half of the stream):
       the lowest threshold whose FA/h <= detection.target_fa_per_hour;
    3. reports, at that threshold: FRR and FA/h on test, FA/h on the test half of the stream,
       FRR and FA/h on test_unseen_voice; frame-level precision/recall/F1; median detection
       latency; FRR by voice family and by background kind; the DET curves (det.csv,
       det.png) and a picture of misses and false accepts (errors.png)."""
    import csv

    from components.audio import detection as det
    from components.audio.evaluation import at_threshold, det_curve, score_split
    from components.audio.figures import plot_errors
    from components.audio.model import load_model, save_model as save
    from components.split import read_split

    model = load_model(model_path)
    manifest = pd.read_csv(data_dir / "manifest.csv")
    labels = np.load(data_dir / "labels.npy", mmap_mode="r")
    step_s, window = model.step_seconds, p.detection.window_after_s
    base = det.DetectionConfig(smoothing_steps=p.detection.smoothing_steps, refractory_s=p.detection.refractory_s)
    names = ("val", "negative_stream_val", "test", "negative_stream_test", "test_unseen_voice")
    scored = {name: score_split(model, data_dir, manifest, read_split(split_dir, name)) for name in names}

    curves = {"val": det_curve(scored["val"] + scored["negative_stream_val"], step_s, base, window)}
    threshold = float(det.pick_operating_threshold(curves["val"], p.detection.target_fa_per_hour))
    cfg = det.DetectionConfig(smoothing_steps=base.smoothing_steps, refractory_s=base.refractory_s, threshold=threshold)
    metrics: dict = {"threshold": round(threshold, 5), "target_fa_per_hour": p.detection.target_fa_per_hour}
    errors = {}
    for name, parts in REPORTED.items():
        clips = [c for part in parts for c in scored[part]]
        curves.setdefault(name, det_curve(clips, step_s, base, window))
        result = at_threshold(clips, step_s, cfg, window, labels)
        errors[name] = (result.pop("_misses"), result.pop("_false_accepts"))
        metrics[name] = result
    headline = {"frr_test": metrics["test"]["frr"], "fa_per_hour_test": metrics["test"]["fa_per_hour"],
                "fa_per_hour_stream": metrics["negative_stream_test"]["fa_per_hour"],
                "frr_unseen_voice": metrics["test_unseen_voice"]["frr"],
                "fa_per_hour_unseen_voice": metrics["test_unseen_voice"]["fa_per_hour"],
                "frame_f1_test": metrics["test"].get("frame_f1"), "latency_median_s": metrics["test"]["latency_median_s"]}

    model.threshold = threshold
    model.metadata = {**model.metadata, "detection": {"smoothing_steps": cfg.smoothing_steps,
                                                      "refractory_s": cfg.refractory_s}}
    save(model, detector_out)
    with open(out / "det.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["split", "threshold", "frr", "fa_per_hour"])
        writer.writeheader()
        for name, curve in curves.items():
            writer.writerows({"split": name, **row} for row in det.det_curve_rows(curve))
    det.plot_det_curve(curves, {"test": threshold}, out / "det.png")
    test_misses, test_fas = errors["test"]
    plot_errors(data_dir, manifest, test_misses[:3], test_fas[:3] + errors["negative_stream_test"][1][:1],
                step_s, cfg, out / "errors.png")
    return headline, metrics


# ------------------------------------------------------------------------------ register

GATE_SPLITS = ("test", "negative_stream_test")


def registered_name(p: TriggerWordParams) -> str:
    from components.registry import registered_name as name
    return name(p.slug)


def version_tags(p: TriggerWordParams) -> dict:
    return {"trigger_word": p.word}


def load_evaluated(ref: str):
    from components.detect import load_detector
    return load_detector(ref)


def log_model(detector_path: Path):
    from components.registry import log_detector
    return log_detector(detector_path)


def gate_figures(model, p: TriggerWordParams, data_dir: Path, split_dir: Path) -> dict:
    """FRR and FA/h of a detector at its own threshold on the test split and the test half
    of the negative stream."""
    from components.audio import detection as det
    from components.audio.evaluation import at_threshold, score_split
    from components.split import read_split

    manifest = pd.read_csv(data_dir / "manifest.csv")
    clips = [c for name in GATE_SPLITS for c in score_split(model, data_dir, manifest, read_split(split_dir, name))]
    cfg = det.DetectionConfig(smoothing_steps=p.detection.smoothing_steps, refractory_s=p.detection.refractory_s,
                              threshold=model.threshold)
    result = at_threshold(clips, model.step_seconds, cfg, p.detection.window_after_s)
    return {"frr": result["frr"], "fa_per_hour": result["fa_per_hour"], "threshold": round(model.threshold, 5)}


def decide(challenger: dict, champion: dict | None, p: TriggerWordParams) -> tuple[bool, str]:
    """Promote when FRR is lower by more than gate.min_frr_improvement and FA/h is not
    worse by more than gate.fa_per_hour_tolerance."""
    if champion is None:
        return True, "no champion yet"
    gate = p.gate
    fa_ok = challenger["fa_per_hour"] <= champion["fa_per_hour"] + gate.fa_per_hour_tolerance
    better = challenger["frr"] < champion["frr"] - gate.min_frr_improvement
    figures = (f"FRR {challenger['frr']:.4f} vs {champion['frr']:.4f}, "
               f"FA/h {challenger['fa_per_hour']:.3f} vs {champion['fa_per_hour']:.3f}")
    if better and fa_ok:
        return True, f"beats champion: {figures}"
    why = "FA/h worse" if not fa_ok else "FRR not lower"
    return False, f"kept champion ({why}): {figures}"
