"""Stage `evaluate`: event-level figures of the trained model (DESIGN §4 "Metrics").

1. Scores every clip of val, test, test_unseen_voice and both halves of the negative stream.
2. Picks the operating threshold on validation (val clips + the val half of the stream):
   the lowest threshold whose FA/h <= detection.target_fa_per_hour.
3. Reports, at that threshold: FRR and FA/h on test, FA/h on the test half of the stream,
   FRR and FA/h on test_unseen_voice; frame-level precision/recall/F1; median detection
   latency; FRR by voice family and by background kind; the DET curves.
Outputs: models/trigger_word/detector.pt (the model with its threshold), and
reports/trigger_word/evaluate/{metrics.json, det.csv, det.png, errors.png}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from components import paths, tracking
from components.audio import detection as det
from components.audio.evaluation import at_threshold, det_curve, score_split
from components.audio.figures import plot_errors
from components.audio.model import load_model, save_model
from components.config import TriggerWordParams
from components.stage_cli import stage_main, staged_output
from components.train import read_split

PIPELINE = "trigger-word"
# reported set -> the splits it pools; validation pools its clips with the stream's val half
REPORTED = {"val": ("val", "negative_stream_val"), "test": ("test",),
            "negative_stream_test": ("negative_stream_test",), "test_unseen_voice": ("test_unseen_voice",)}


def run(p: TriggerWordParams, data_dir: Path, split_dir: Path, model_path: Path, detector_out: Path,
        report_dir: Path) -> dict:
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = load_model(model_path)
    manifest = pd.read_csv(data_dir / "manifest.csv")
    labels = np.load(data_dir / "labels.npy", mmap_mode="r")
    step_s, window = model.step_seconds, p.detection.window_after_s
    base = det.DetectionConfig(smoothing_steps=p.detection.smoothing_steps, refractory_s=p.detection.refractory_s)
    names = ("val", "negative_stream_val", "test", "negative_stream_test", "test_unseen_voice")
    scored = {name: score_split(model, data_dir, manifest, read_split(split_dir, name)) for name in names}

    validation = scored["val"] + scored["negative_stream_val"]
    curves = {"val": det_curve(validation, step_s, base, window)}
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
    metrics = {**headline, **metrics}

    model.threshold = threshold
    model.metadata = {**model.metadata, "detection": {"smoothing_steps": cfg.smoothing_steps,
                                                      "refractory_s": cfg.refractory_s}}
    detector_out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, detector_out)
    with staged_output(report_dir) as out:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with open(out / "det.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["split", "threshold", "frr", "fa_per_hour"])
            writer.writeheader()
            for name, curve in curves.items():
                writer.writerows({"split": name, **row} for row in det.det_curve_rows(curve))
        det.plot_det_curve(curves, {"test": threshold}, out / "det.png")
        test_misses, test_fas = errors["test"]
        plot_errors(data_dir, manifest, test_misses[:3], test_fas[:3] + errors["negative_stream_test"][1][:1],
                    step_s, cfg, out / "errors.png")
    tracking.log_metrics({k: v for k, v in headline.items() if v is not None})
    tracking.log_artifacts([report_dir / name for name in ("metrics.json", "det.csv", "det.png", "errors.png")], "evaluate")
    return headline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = paths.pipeline_dir(PIPELINE)
    parser.add_argument("--data", type=Path, default=base / "generated")
    parser.add_argument("--split", type=Path, default=base / "split")
    parser.add_argument("--model", type=Path, default=paths.MODELS_DIR / "trigger_word" / "model.pt")
    parser.add_argument("--detector-out", type=Path, default=paths.MODELS_DIR / "trigger_word" / "detector.pt")
    parser.add_argument("--report", type=Path, default=paths.REPORTS_DIR / "trigger_word" / "evaluate")
    return stage_main(parser, argv, lambda params, args: run(
        params.trigger_word, args.data, args.split, args.model, args.detector_out, args.report))


if __name__ == "__main__":
    raise SystemExit(main())
