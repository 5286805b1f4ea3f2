"""`cs230 export` (DESIGN §6): the ONNX step graph streams like the torch model, the variants are
smaller, the onnxruntime-only runner detects what `cs230 detect` detects and imports no torch,
every variant carries the model's own detection settings (or the flags'), and the export writes
the report of four variants."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import soundfile as sf
import torch

from components.audio.detection import DetectionConfig
from components.audio.features import FeatureConfig
from components.audio.model import ModelConfig, TriggerWordModel, save_model
from components.detect import detect_file as torch_detect_file
from components.ondevice import compress
from components.ondevice.onnx_export import export_step
from components.ondevice.runner import StepRunner, detect_file
from components.config import load_params
from conftest import PROJECT_ROOT, trigger_word_model, write_params

REPORT_KEYS = {"variant", "size_kb", "latency_ms_per_s", "frr", "fa_per_hour"}


def random_model(seed: int = 0, **sizes) -> TriggerWordModel:
    """Random weights, fitted-looking normalisation and batch-norm statistics (none of them identity)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    p = load_params().trigger_word
    features = dataclasses.replace(FeatureConfig.from_params(p), mean=tuple(rng.normal(-6, 1, 40)),
                                   std=tuple(rng.uniform(1, 3, 40)))
    model = TriggerWordModel(features, ModelConfig.from_params(p.model, **sizes))
    with torch.no_grad():
        model.norm.running_mean.normal_(0, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
        model.norm.weight.normal_(1, 0.2)
        model.norm.bias.normal_(0, 0.2)
    return model.eval()


def probe_audio(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Noise, a tone, digital silence and a loud burst: every level the features must follow."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 1 < 0.5)
    wave[16000:20000] = 0.0
    wave[24000:26000] *= 3
    return wave.astype(np.float32)


def torch_streaming(model: TriggerWordModel, wave: np.ndarray) -> np.ndarray:
    return model.stream().process(wave)


@pytest.mark.parametrize("sizes", [{}, {"conv_kernel": 2, "conv_stride": 2, "gru_layers": 1, "gru_hidden": 24}],
                         ids=["default", "no-frame-context"])
def test_step_graph_streams_like_torch(sizes, tmp_path):
    model = random_model(**sizes)
    runner = StepRunner(export_step(model, tmp_path / "m.onnx"))
    wave = probe_audio()
    expected = torch_streaming(model, wave)
    assert len(expected) == model.output_steps(len(wave))
    np.testing.assert_allclose(runner.probs(wave), expected, atol=1e-4, rtol=0)
    stream = runner.stream()  # chunks of any size, state carried across them
    chunked = np.concatenate([stream.process(wave[i:i + 777]) for i in range(0, len(wave), 777)])
    np.testing.assert_allclose(chunked, expected, atol=1e-4, rtol=0)
    meta = runner.metadata
    assert meta["samples_per_step"] == "320" and float(meta["threshold"]) == model.threshold


def test_int8_is_smaller_and_close(tmp_path):
    model = random_model()
    fp32 = export_step(model, tmp_path / "fp32.onnx")
    int8 = compress.quantize_int8(fp32, tmp_path / "int8.onnx")
    assert int8.stat().st_size <= 0.3 * fp32.stat().st_size
    wave = probe_audio()
    close = np.abs(StepRunner(int8).probs(wave) - StepRunner(fp32).probs(wave))
    assert close.mean() < 0.02, "int8 weights should move probabilities by little"
    assert StepRunner(int8).metadata["variant"] == "int8"


def test_pruned_zeros_are_stored_as_a_bitmask(tmp_path):
    model = random_model()
    dense = export_step(model, tmp_path / "dense.onnx")
    pruned = compress.remove_pruning_masks(compress.add_pruning_masks(model, 0.5))
    assert abs(compress.sparsity(pruned) - 0.5) < 0.01
    sparse = export_step(pruned, tmp_path / "pruned.onnx")
    assert sparse.stat().st_size < 0.6 * dense.stat().st_size
    wave = probe_audio()
    np.testing.assert_allclose(StepRunner(sparse).probs(wave), torch_streaming(pruned, wave), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A small random model, its threshold between its levels on tone bursts: it detects."""
    root = tmp_path_factory.mktemp("runner")
    rate = 16000
    t = np.arange(10 * rate) / rate
    wave = np.where((t % 2.5 >= 1.0) & (t % 2.5 < 1.5), 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    sf.write(root / "bursts.wav", wave, rate, subtype="PCM_16")
    sf.write(root / "bursts44k.wav", np.repeat(wave[::4], 11)[: 10 * 44100], 44100, subtype="PCM_16")
    torch.manual_seed(0)
    model = trigger_word_model(conv_filters=16, gru_hidden=16, gru_layers=1, dropout=0.0).eval()
    with torch.no_grad():
        model.head.weight.mul_(10)
    probs = torch_streaming(model, sf.read(root / "bursts.wav", dtype="float32")[0])
    model.threshold = float((np.median(probs[60:70]) + np.median(probs[25:45])) / 2)
    save_model(model, root / "detector.pt")
    return model, export_step(model, root / "model.onnx", {"smoothing_steps": "5", "refractory_s": "1.0"}), root


@pytest.mark.parametrize("clip", ["bursts.wav", "bursts44k.wav"])
def test_runner_detects_what_cs230_detect_detects(detector, clip):
    model, onnx_path, root = detector
    expected = torch_detect_file(model, root / clip)
    got = detect_file(StepRunner(onnx_path), root / clip)
    assert len(expected["detections"]) >= 3, "test setup: the model should fire on the bursts"
    assert got["duration_s"] == expected["duration_s"]
    assert [d["time_s"] for d in got["detections"]] == [d["time_s"] for d in expected["detections"]]
    for a, b in zip(got["detections"], expected["detections"]):
        assert abs(a["score"] - b["score"]) <= 0.0011  # equal up to the 3-decimal rounding


def test_the_onnx_file_carries_the_models_own_detection_settings(detector, tmp_path):
    """A detector saved with a 9 s refractory period and 3-step smoothing: the ONNX runner uses
    them (one detection on four bursts 2.5 s apart), as `cs230 detect` does."""
    model, _, root = detector
    model.set_detection_config(model.detection_config(refractory_s=9.0, smoothing_steps=3))
    try:
        runner = StepRunner(export_step(model, tmp_path / "slow.onnx"))
        expected = torch_detect_file(model, root / "bursts.wav")
    finally:
        model.metadata.pop("detection")
    assert runner.detection == DetectionConfig(3, 9.0, model.threshold)
    got = detect_file(runner, root / "bursts.wav")
    assert len(expected["detections"]) == 1
    assert [d["time_s"] for d in got["detections"]] == [d["time_s"] for d in expected["detections"]]


def test_runner_cli_prints_detect_records_and_imports_no_torch(detector):
    _, onnx_path, root = detector
    code = ("import runpy, sys\n"
            f"sys.argv = ['runner', {str(onnx_path)!r}, {str(root / 'bursts.wav')!r}, {str(root / 'missing.wav')!r}]\n"
            "try:\n    runpy.run_module('components.ondevice.runner', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exit:\n    rc = exit.code\n"
            "assert 'torch' not in sys.modules, 'the runner imported torch'\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # one file could not be read
    good, missing = [json.loads(line) for line in proc.stdout.splitlines()]
    assert set(good) == {"file", "duration_s", "detections"} and good["detections"]
    assert set(good["detections"][0]) == {"time_s", "score"}
    assert missing == {"file": str(root / "missing.wav"), "error": "no such file or directory"}


def test_export_writes_four_variants(tiny_dataset, tmp_path, monkeypatch):
    from components import export
    from components.config import load_params
    from components.split import run as split_run

    split_run("trigger-word", load_params(PROJECT_ROOT / "params.yaml").trigger_word, tiny_dataset, tmp_path / "split")
    for name, keep in {"train": 24, "val": 8}.items():  # fine-tuning and distillation only need to run
        path = tmp_path / "split" / f"{name}.txt"
        path.write_text("\n".join(path.read_text().split()[:keep]) + "\n")
    teacher = random_model(conv_filters=16, gru_hidden=16, gru_layers=2)
    teacher.set_detection_config(DetectionConfig(smoothing_steps=3, refractory_s=7.5, threshold=0.5))
    save_model(teacher, tmp_path / "detector.pt")  # unusual settings: no variant may take params.yaml's
    params = write_params(tmp_path / "params.yaml", {
        "train": {"max_epochs": 1},
        "export": {"prune_epochs": 1, "distill_epochs": 1, "latency_repeats": 1,
                   "student_conv_filters": 4, "student_gru_hidden": 4, "student_gru_layers": 1}})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    out = tmp_path / "export"
    assert export.main(["--params", str(params), "--model", str(tmp_path / "detector.pt"), "--out", str(out),
                        "--data", str(tiny_dataset), "--split", str(tmp_path / "split"), "--threshold", "0.6"]) == 0

    report = json.loads((out / "export_report.json").read_text())
    assert [r["variant"] for r in report] == ["fp32", "int8", "pruned", "distilled"]
    assert all(set(r) == REPORT_KEYS for r in report)
    assert all(r["size_kb"] > 0 and r["latency_ms_per_s"] > 0 and 0 <= r["frr"] <= 1 and r["fa_per_hour"] >= 0
               for r in report)
    by = {r["variant"]: r for r in report}
    assert by["int8"]["size_kb"] < by["fp32"]["size_kb"] and by["pruned"]["size_kb"] < by["fp32"]["size_kb"]
    details = json.loads((out / "export_details.json").read_text())
    assert details["targets"]["student_parameter_share"] <= 0.25
    assert details["distilled"]["parameters"] * 4 <= details["fp32"]["parameters"]
    assert abs(details["pruned"]["sparsity"] - 0.5) < 0.01
    for v in by:
        runner = StepRunner(out / f"{v}.onnx")
        assert runner.metadata["variant"] == v
        assert (runner.detection.smoothing_steps, runner.detection.refractory_s) == (3, 7.5)  # the model's
        assert v == "distilled" or runner.detection.threshold == 0.6  # the flag's; the student picks its own

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["trigger-word"], output_format="list")
    assert run.info.status == "FINISHED" and run.data.metrics["export_int8_size_kb"] == by["int8"]["size_kb"]
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "export")}
    assert {"export/export_report.json", "export/int8.onnx"} <= logged


def test_student_shrinks_to_a_quarter_of_a_small_teacher():
    """The search may pick a teacher smaller than the configured student's sizes assume (seen on a
    default run: 14,936 parameters): the student then shrinks until it fits, and export still works."""
    from components.export import build_student

    p = load_params(PROJECT_ROOT / "params.yaml").trigger_word
    small = trigger_word_model(conv_filters=32, gru_hidden=64, gru_layers=1)
    big = trigger_word_model()
    for teacher in (small, big):
        student = build_student(p, teacher)
        assert compress.parameter_count(student) <= compress.parameter_count(teacher) / 4
        assert student.model_cfg.conv_filters <= p.export.student_conv_filters
        assert student.model_cfg.gru_hidden <= p.export.student_gru_hidden
    assert build_student(p, big).model_cfg.gru_hidden == p.export.student_gru_hidden  # fits as configured
    assert build_student(p, small).model_cfg.gru_hidden < p.export.student_gru_hidden
