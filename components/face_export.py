"""`cs230 export --face`: the on-device build of the face encoder (DESIGN §6).

1. Loads the encoder: by default `models:/face-encoder@champion`; `--model` takes another URI, a
   saved encoder file, or a folder holding one. Only the CNN kind exports (a dlib-head encoder
   runs dlib's C++ ResNet, which has no ONNX form: the command says so and exits 2).
2. Writes fp32.onnx and int8.onnx (static int8, calibrated on `face.export.calibration_chips`
   chips of the train split) to `--out` (components/ondevice/face_onnx.py).
3. Measures each on the test identities: file size; milliseconds per face on one onnxruntime
   thread (batch of one, best of `face.export.latency_repeats`); TAR at face.evaluate.target_far
   (the threshold re-picked on these pairs, as evaluate reports it) and TAR and FAR at the model's
   own threshold (the operating point the file carries), on the pairs evaluate samples
   (face.evaluate: max_same_pairs, different_pairs, seed).
4. Writes face_export_report.json (one row per variant) and logs figures and files to MLflow: the
   pipeline's run when there is one, else a run of its own in experiment "face".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from components import paths, tracking
from components.face_commands import CHAMPION_URI, load_encoder_ref
from components.refs import ModelLoadError
from components.split import read_split
from components.stage_cli import StageError, stage_main

PIPELINE = "face"
VARIANTS = ("fp32", "int8")
REPORT_KEYS = ("variant", "size_kb", "ms_per_face", "tar_at_far", "tar_at_threshold", "far_at_threshold")
TARGETS = {"ms_per_face": 10.0, "size_kb": 5 * 1024}  # issue 12: <= 10 ms per face (int8), <= 5 MB


def _say(message: str) -> None:
    print(f"export: {message}", file=sys.stderr, flush=True)  # stdout carries the stage's JSON result


def split_chips(data_dir: Path, split_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(chips uint8 [n, S, S, 3], identity labels [n]) of one split of the generated dataset."""
    import pandas as pd

    if not (data_dir / "images.npy").is_file():
        raise StageError(f"{data_dir / 'images.npy'}: not found; run `cs230 run face` first (or pass --data)")
    images = np.load(data_dir / "images.npy", mmap_mode="r")
    manifest = pd.read_csv(data_dir / "manifest.csv", dtype={"identity": str})
    ids = np.array([int(i) for i in read_split(split_dir, name)], dtype=np.int64)
    return np.asarray(images[ids]), manifest.set_index("image_id").loc[ids, "identity"].to_numpy()


def ms_per_face(encoder, one: np.ndarray, repeats: int) -> float:
    """Milliseconds to embed one face (batch of one): the best of `repeats` runs after a warm-up."""
    encoder.embed_inputs(one)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.embed_inputs(one)
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def verification_row(emb: np.ndarray, pairs: np.ndarray, same: np.ndarray, threshold: float, far: float) -> dict:
    from components.face import verification as ver

    d = ver.pair_distances(emb, pairs)
    tar, _ = ver.tar_at_far(d[same], d[~same], far)
    return {"tar_at_far": round(tar, 4), "tar_at_threshold": round(float(np.mean(d[same] <= threshold)), 4),
            "far_at_threshold": round(float(np.mean(d[~same] <= threshold)), 6)}


def run(p, model_ref: str, data_dir: Path, split_dir: Path, out_dir: Path, tracking_uri: str | None = None) -> list[dict]:
    """The two ONNX files in `out_dir` and their report rows (p: the params' face section)."""
    from components.face import verification as ver
    from components.ondevice.face_onnx import NotExportable, OnnxEncoder, export_encoder, quantize_encoder

    try:
        net = load_encoder_ref(model_ref, tracking_uri=tracking_uri).net
    except ModelLoadError as exc:
        raise StageError(f"model {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)  # only our files are (over)written: --out may hold others
    try:
        fp32 = export_encoder(net, out_dir / "fp32.onnx", {"model": model_ref})
    except NotExportable as exc:
        raise StageError(f"export: {model_ref}: {exc}") from None
    train_chips, _ = split_chips(data_dir, split_dir, "train")
    rng = np.random.default_rng(p.seed)
    calibration = train_chips[np.sort(rng.choice(len(train_chips), min(len(train_chips), p.export.calibration_chips),
                                                 replace=False))]
    built = {"fp32": fp32, "int8": quantize_encoder(fp32, out_dir / "int8.onnx", net.inputs(calibration))}
    _say("fp32 and int8 written; measuring on the test identities")
    chips, labels = split_chips(data_dir, split_dir, "test")
    e = p.evaluate
    pairs, same = ver.verification_pairs(labels, e.max_same_pairs, e.different_pairs, e.seed)
    x = net.inputs(chips)
    report = []
    for v in VARIANTS:
        encoder = OnnxEncoder(built[v])
        report.append({"variant": v, "size_kb": round(built[v].stat().st_size / 1024, 1),
                       "ms_per_face": round(ms_per_face(encoder, x[:1], p.export.latency_repeats), 3),
                       **verification_row(encoder.embed_inputs(x), pairs, same, net.threshold, e.target_far)})
    torch_row = {"variant": "torch", **verification_row(net.embed_inputs(x), pairs, same, net.threshold, e.target_far)}
    details = {"model": model_ref, "threshold": net.threshold, "target_far": e.target_far,
               "test": {"faces": len(chips), "identities": len(set(labels)), "same_pairs": int(same.sum()),
                        "different_pairs": int((~same).sum())}, "torch": torch_row,
               "targets": {"int8_ms_per_face_max": TARGETS["ms_per_face"], "int8_size_kb_max": TARGETS["size_kb"],
                           "met": report[1]["ms_per_face"] <= TARGETS["ms_per_face"]
                           and report[1]["size_kb"] <= TARGETS["size_kb"]}}
    (out_dir / "face_export_report.json").write_text(json.dumps({"rows": report, **details}, indent=2) + "\n")
    tracking.log_metrics({f"export_face_{r['variant']}_{k}": r[k] for r in report for k in REPORT_KEYS[1:]})
    tracking.log_artifacts([*built.values(), out_dir / "face_export_report.json"], "export_face")
    for r in report:
        _say("  ".join(f"{k} {r[k]}" for k in REPORT_KEYS))
    return report


def main(argv: list[str] | None = None) -> int:
    from components.export import mlflow_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = paths.pipeline_dir(PIPELINE)
    parser.add_argument("--model", metavar="PATH_OR_URI", help=f"default: {CHAMPION_URI}")
    parser.add_argument("--out", type=Path, default=paths.MODELS_DIR / "face" / "export")
    parser.add_argument("--data", type=Path, default=base / "generated")
    parser.add_argument("--split", type=Path, default=base / "split")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")  # as `cs230`
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def body(params, args) -> dict:
        with mlflow_run(PIPELINE):
            import mlflow

            report = run(params.face, args.model or CHAMPION_URI, args.data, args.split, args.out,
                         tracking_uri=mlflow.get_tracking_uri())
        return {"out": str(args.out), "report": report}

    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
