"""Trigger word, judging side: event-level evaluation and the registry gate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.config import TriggerWordParams
from components.gate import GateDecision, difference_interval, gate_decision

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
       where its DET curve crosses detection.target_fa_per_hour (interpolated between the
       sweep's thresholds); metrics.json's target_met says whether held-out FA/h stayed at or under it;
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
    from components.audio.embedding import label_factor, pool_labels
    factor = label_factor(step_s, p.labels.step_ms)
    if factor > 1:  # a speech-embedding head steps every 80 ms: labels on its grid, as it trained on
        labels = pool_labels(labels, factor)
    base = det.DetectionConfig.from_params(p.detection, threshold=0.5)  # the DET sweeps set their own thresholds
    names = ("val", "negative_stream_val", "test", "negative_stream_test", "test_unseen_voice")
    scored = {name: score_split(model, data_dir, manifest, read_split(split_dir, name)) for name in names}

    curves = {"val": det_curve(scored["val"] + scored["negative_stream_val"], step_s, base, window)}
    threshold = det.interpolated_threshold(curves["val"], p.detection.target_fa_per_hour)
    cfg = det.DetectionConfig.from_params(p.detection, threshold)
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
    # whether the FA/h target held on held-out audio at the threshold chosen on val
    metrics["target_met"] = {name: bool(metrics[name]["fa_per_hour"] is not None
                                        and metrics[name]["fa_per_hour"] <= p.detection.target_fa_per_hour)
                             for name in ("test", "negative_stream_test", "test_unseen_voice")}

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

def registered_name(p: TriggerWordParams) -> str:
    from components.detect import registered_name as name
    return name(p.slug)


def version_tags(p: TriggerWordParams) -> dict:
    return {"trigger_word": p.word}


def load_evaluated(ref: str):
    from components.detect import load_detector
    return load_detector(ref)


def log_model(detector_path: Path):
    from components.registry import log_detector
    return log_detector(detector_path)


def gate_figures(model, p: TriggerWordParams, gate_dir: Path) -> dict:
    """A detector's figures on the gate set (stage gate_data), with its own detection settings
    (threshold, smoothing, refractory period: chosen at evaluation and saved in it):
    - frr_at_target: its FRR at gate.target_fa_per_hour, read from its DET curve over the whole
      set (positive clips and negative hours pooled, as evaluation pools val and the stream),
      with a Wilson interval over the set's trigger words; meets_target: within gate.target_frr;
    - at its own threshold, what users get: frr, false_accepts, fa_per_hour and a Poisson
      interval of the rate;
    - gate_hash, triggers, hours; det: the DET curve (a list: decision.json only)."""
    from components.audio import detection as det
    from components.audio.evaluation import at_threshold, det_curve, score_split
    from components.gate import poisson_interval, wilson_interval
    from components.gate_data import read_gate_info

    gate_dir, g = Path(gate_dir), p.gate
    info = read_gate_info(gate_dir)
    manifest = pd.read_csv(gate_dir / "manifest.csv")
    clips = score_split(model, gate_dir, manifest, manifest["clip_id"].tolist())
    cfg, step_s, window = model.detection_config(), model.step_seconds, p.detection.window_after_s
    curve = det_curve(clips, step_s, cfg, window)
    frr = det.frr_at_fa_per_hour(curve, g.target_fa_per_hour)
    frr_low, frr_high = wilson_interval(frr * curve.n_triggers, curve.n_triggers, g.confidence)
    own = at_threshold(clips, step_s, cfg, window)
    fa_low, fa_high = poisson_interval(own["false_accepts"], g.confidence)
    figures = {"gate_hash": info["gate_hash"], "triggers": curve.n_triggers, "hours": round(curve.hours, 3),
              "target_fa_per_hour": g.target_fa_per_hour, "frr_at_target": round(frr, 5),
              "frr_at_target_low": round(frr_low, 5), "frr_at_target_high": round(frr_high, 5),
              "threshold": round(cfg.threshold, 5), "smoothing_steps": cfg.smoothing_steps,
              "refractory_s": cfg.refractory_s,
              "frr": own["frr"], "false_accepts": own["false_accepts"], "fa_per_hour": own["fa_per_hour"],
              "fa_per_hour_low": round(fa_low / curve.hours, 4), "fa_per_hour_high": round(fa_high / curve.hours, 4),
              "det": det.det_curve_rows(curve)}
    return {**figures, "meets_target": meets_target(figures, p)}


def meets_target(figures: dict, p: TriggerWordParams) -> bool:
    """The quality floor: FRR at the gate's operating point within gate.target_frr."""
    return bool(figures["frr_at_target"] <= p.gate.target_frr)


def decide(challenger: dict, champion: dict | None, p: TriggerWordParams) -> GateDecision:
    """The promotion gate on two models' gate_figures (same gate set, scored now):
    - no champion yet: the challenger takes it, whatever it scores, so the product works;
    - both are compared at the same operating point, gate.target_fa_per_hour on their DET
      curves: the challenger wins only if the interval of its FRR minus the champion's (from
      both Wilson intervals) lies below zero, so its gain is more than the noise of the set's
      trigger words (an equal model never wins, one extra miss never decides);
    - and the false accepts at its own threshold (what users get) are not above both the
      champion's rate and the target beyond Poisson noise (the interval's lower bound).
    The note says loudly whether the resulting champion reaches gate.target_frr."""
    g, new, old = p.gate, challenger, champion
    point = f"{g.target_fa_per_hour:g} FA/h"

    def decision(promote: bool, reason: str) -> GateDecision:
        return gate_decision(promote, reason, new, old, lambda f: meets_target(f, p),
                             lambda f: f"FRR {f['frr_at_target']:.3f} at {point}",
                             f"FRR <= {g.target_frr:g} at {point}")

    if old is None:
        return decision(True, f"first version, no champion yet: FRR {new['frr_at_target']:.4f} at {point}")
    if new["gate_hash"] != old["gate_hash"]:
        return decision(False, "kept champion: the two were not measured on the same gate set")
    key = "frr_at_target"
    _, gain_high = difference_interval(new[key], (new[f"{key}_low"], new[f"{key}_high"]),
                                       old[key], (old[f"{key}_low"], old[f"{key}_high"]))
    figures = (f"FRR at {point} {new[key]:.4f} vs {old[key]:.4f} (difference <= {gain_high:+.4f}) over "
               f"{new['triggers']} triggers; own threshold FA/h {new['fa_per_hour']:.3f} "
               f"(>= {new['fa_per_hour_low']:.3f}) vs {old['fa_per_hour']:.3f}")
    if not gain_high < 0:
        return decision(False, f"kept champion (FRR not lower beyond noise): {figures}")
    if new["fa_per_hour_low"] > max(old["fa_per_hour"], g.target_fa_per_hour):
        return decision(False, f"kept champion (FA/h worse beyond noise): {figures}")
    return decision(True, f"beats champion: {figures}")
