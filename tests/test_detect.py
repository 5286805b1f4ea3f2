"""`cs230 detect` (DESIGN §4): streaming equals offline, bad files are reported and skipped,
the JSON-lines contract, the model's own detection settings and the flags that override them,
the duration cap on decoded samples, and loading the champion from MLflow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from components.audio.audio_io import AudioReadError, read_audio
from components.audio.detection import DetectionConfig, detect
from components.audio.model import TriggerWordModel, save_model
from components.config import load_params
from components.refs import ModelLoadError, is_model_uri
from components.detect import (AudioTooLong, detect_file, iter_inputs, load_detector,
                               stream_detections)
from conftest import trigger_word_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CFG = DetectionConfig.from_params(load_params().trigger_word.detection, threshold=0.5)  # smoothing 5, 1 s
BURSTS_S = (1.0, 3.5, 6.0, 8.5)  # 0.5 s tones on digital silence: steady levels, sharp edges
RECORD_KEYS = {"file", "duration_s", "detections"}


def tone_bursts(rate: int, seconds: float = 10.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros_like(t)
    for start in BURSTS_S:
        on = (t >= start) & (t < start + 0.5)
        x[on] = 0.5 * np.sin(2 * np.pi * 440 * t[on])
    return np.stack([x * (0.8 + 0.2 * c) for c in range(channels)], axis=1).squeeze().astype(np.float32)


def offline_probs(model: TriggerWordModel, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(wave)[None]))[0].numpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad inputs in inputs/ (plus a nested good FLAC and a non-audio .txt)."""
    root = tmp_path_factory.mktemp("detect")
    d = root / "inputs"
    (d / "nested" / "deeper").mkdir(parents=True)
    f = {"good": d / "a_good16k.wav", "stereo": d / "b_stereo44k.wav", "empty": d / "c_empty.wav",
         "truncated": d / "d_truncated.wav", "not_audio": d / "e_not_audio.wav",
         "flac": d / "nested" / "deeper" / "f_good.flac"}
    sf.write(f["good"], tone_bursts(16000), 16000, subtype="PCM_16")
    sf.write(f["stereo"], tone_bursts(44100, channels=2), 44100, subtype="PCM_16")
    sf.write(f["empty"], np.zeros(0, np.float32), 16000, subtype="PCM_16")
    good = f["good"].read_bytes()
    f["truncated"].write_bytes(good[: len(good) // 2 + 1])  # cut mid-data, mid-sample
    f["not_audio"].write_text("these are not the samples you are looking for\n")
    sf.write(f["flac"], tone_bursts(16000, seconds=3.0), 16000)
    (d / "notes.txt").write_text("not searched: only .wav/.flac are picked up in a folder\n")
    f["root"], f["dir"] = root, d
    return f


@pytest.fixture(scope="module")
def detector(files) -> tuple[TriggerWordModel, Path]:
    """A tiny random model whose threshold sits between its silence and tone levels."""
    torch.manual_seed(0)
    model = trigger_word_model(conv_filters=16, gru_hidden=16, gru_layers=1, dropout=0.0)
    with torch.no_grad():
        model.head.weight.mul_(10)  # random weights respond weakly: widen the gap between levels
    model.eval()
    probs = offline_probs(model, read_audio(files["good"]))
    step = model.step_seconds
    silence = np.median(probs[int(0.3 / step): int(0.9 / step)])
    tone = np.median(probs[int(1.2 / step): int(1.45 / step)])
    assert abs(tone - silence) > 0.2, "test setup: the model should tell tones from silence"
    model.threshold = float((tone + silence) / 2)
    path = files["root"] / "model" / "detector.pt"
    save_model(model, path)
    return model, path


def start_cli(*args, env: dict | None = None, cwd: Path = PROJECT_ROOT) -> subprocess.Popen:
    """`cs230 detect ARGS` in a fresh process; start several, then `finish` them, to overlap."""
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "detect", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_cli(*args, env: dict | None = None, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return finish(start_cli(*args, env=env, cwd=cwd))


def json_lines(proc: subprocess.CompletedProcess) -> list[dict]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


# ------------------------------------------------------------------------------ domain

def test_streaming_equals_offline_detection_at_16k(detector, files):
    model, _ = detector
    cfg = DetectionConfig(CFG.smoothing_steps, CFG.refractory_s, model.threshold)
    offline = detect(offline_probs(model, read_audio(files["good"])), model.step_seconds, cfg)
    assert len(offline) == len(BURSTS_S)  # one detection per tone burst
    duration, streamed = stream_detections(model, files["good"], cfg)  # one block: bit-identical
    assert duration == 10.0 and streamed == offline
    _, small_blocks = stream_detections(model, files["good"], cfg, block_seconds=0.37)
    assert [d.time_s for d in small_blocks] == [d.time_s for d in offline]
    np.testing.assert_allclose([d.score for d in small_blocks], [d.score for d in offline], atol=1e-5)


def test_resampled_stereo_stream_gives_the_whole_file_detections(detector, files):
    model, _ = detector
    cfg = DetectionConfig(CFG.smoothing_steps, CFG.refractory_s, model.threshold)
    whole = detect(offline_probs(model, read_audio(files["stereo"])), model.step_seconds, cfg)
    assert len(whole) == len(BURSTS_S)
    duration, streamed = stream_detections(model, files["stereo"], cfg, block_seconds=0.61)
    assert duration == 10.0
    assert [d.time_s for d in streamed] == [d.time_s for d in whole]
    np.testing.assert_allclose([d.score for d in streamed], [d.score for d in whole], atol=0.01)


def test_detect_file_record_is_rounded_and_threshold_overrides_the_model(detector, files):
    model, _ = detector
    record = detect_file(model, files["good"])
    assert set(record) == {"duration_s", "detections"} and record["duration_s"] == 10.0
    assert len(record["detections"]) == len(BURSTS_S)
    for det in record["detections"]:
        assert set(det) == {"time_s", "score"}
        assert det["time_s"] == round(det["time_s"], 3) and det["score"] == round(det["score"], 3)
    assert detect_file(model, files["good"], model.detection_config(threshold=1.01))["detections"] == []
    first = detect_file(model, files["good"], model.detection_config(threshold=0.0))["detections"][0]
    assert first["time_s"] == model.step_seconds


def test_settings_travel_with_the_model_and_arguments_override_them(detector, files, tmp_path):
    """A detector saved with a 9 s refractory period fires once on four bursts 2.5 s apart; one
    saved before evaluation recorded its settings gets DetectionConfig's defaults."""
    model, _ = detector
    assert model.detection_config() == DetectionConfig(CFG.smoothing_steps, CFG.refractory_s, model.threshold)
    model.set_detection_config(model.detection_config(refractory_s=9.0, smoothing_steps=3))
    try:
        save_model(model, tmp_path / "detector.pt")
    finally:
        model.metadata.pop("detection")
    slow = load_detector(str(tmp_path / "detector.pt"))
    assert slow.detection_config() == DetectionConfig(3, 9.0, model.threshold)
    assert len(detect_file(slow, files["good"])["detections"]) == 1
    assert len(detect_file(slow, files["good"], slow.detection_config(refractory_s=1.0))["detections"]) == 4
    assert slow.detection_config(threshold=0.2).refractory_s == 9.0  # one override leaves the rest


def test_duration_cap_counts_decoded_samples_not_the_header(detector, tmp_path):
    """A FLAC whose header says "length unknown" (total_samples 0) is decoded to its end, so the
    cap counts what comes out of the decoder and stops it one block past the limit."""
    model, _ = detector
    flac = tmp_path / "long.flac"
    sf.write(flac, np.tile(tone_bursts(16000), 12), 16000)  # 120 s
    data = bytearray(flac.read_bytes())
    data[21] &= 0xF0  # STREAMINFO's 36-bit total_samples: bits 4-35 of bytes 21..25
    data[22:26] = bytes(4)
    flac.write_bytes(bytes(data))
    assert sf.info(str(flac)).duration > 1e9  # libsndfile's "unknown": no honest figure to check
    with pytest.raises(AudioTooLong, match="the limit is 60 s"):
        detect_file(model, flac, max_seconds=60.0, block_seconds=1.0)


def test_bad_files_raise_a_one_line_reason(detector, files, tmp_path):
    model, _ = detector
    nan_wav = tmp_path / "nan.wav"
    sf.write(nan_wav, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    flac = files["flac"].read_bytes()
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac[: len(flac) // 2])
    expected = {files["empty"]: "empty audio", files["truncated"]: "truncated WAV",
                files["not_audio"]: "not readable audio", nan_wav: "NaN", cut_flac: "decoding failed|truncated",
                tmp_path / "missing.wav": "cannot open"}
    for path, reason in expected.items():
        with pytest.raises(AudioReadError, match=reason) as err:
            detect_file(model, path)
        assert "\n" not in str(err.value) and str(err.value)


def test_iter_inputs_walks_folders_sorted_and_keeps_names_as_given(files, tmp_path):
    items = list(iter_inputs(["inputs/", "inputs/a_good16k.wav", "nope.wav"], files["root"]))
    assert [i.name for i in items] == [
        "inputs/a_good16k.wav", "inputs/b_stereo44k.wav", "inputs/c_empty.wav", "inputs/d_truncated.wav",
        "inputs/e_not_audio.wav", "inputs/nested/deeper/f_good.flac", "inputs/a_good16k.wav", "nope.wav"]
    assert all(i.path.is_absolute() and i.path.is_file() for i in items[:-1])
    assert items[-1].path is None and items[-1].error == "no such file or directory"
    [empty] = iter_inputs([str(tmp_path)], Path("/"))
    assert empty.path is None and "no .wav or .flac files" in empty.error


def test_load_detector_from_a_file_a_folder_or_nowhere(detector, files):
    model, path = detector
    for ref in (path, path.parent, files["root"]):
        loaded = load_detector(str(ref))
        assert loaded.threshold == model.threshold and not loaded.training
    with pytest.raises(ModelLoadError) as err:
        load_detector(str(files["root"] / "nothing-here"))
    assert err.value.not_found
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_detector(str(files["good"]))  # a file, but not a detector
    assert is_model_uri("models:/trigger-word-activate@champion") and is_model_uri("runs:/abc/model")
    assert not is_model_uri("models/trigger_word/detector.pt") and not is_model_uri(r"C:\m\detector.pt")


# ------------------------------------------------------------------------------ CLI

def test_cli_reports_every_file_and_exits_1_when_some_are_bad(detector, files):
    _, model_path = detector
    cwd = PROJECT_ROOT / "components"  # relative paths start where the user runs the command
    proc = run_cli(os.path.relpath(files["dir"], cwd), os.path.relpath(files["root"] / "gone.flac", cwd),
                   "--model", os.path.relpath(model_path, cwd), cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    records = json_lines(proc)
    by_name = {Path(r["file"]).name: r for r in records}
    assert len(records) == 7 and list(by_name) == ["a_good16k.wav", "b_stereo44k.wav", "c_empty.wav",
                                                   "d_truncated.wav", "e_not_audio.wav", "f_good.flac",
                                                   "gone.flac"]
    assert records[0]["file"] == os.path.join(os.path.relpath(files["dir"], cwd), "a_good16k.wav")
    for name in ("a_good16k.wav", "b_stereo44k.wav", "f_good.flac"):
        assert set(by_name[name]) == RECORD_KEYS
    assert by_name["a_good16k.wav"]["duration_s"] == 10.0 and by_name["f_good.flac"]["duration_s"] == 3.0
    assert len(by_name["a_good16k.wav"]["detections"]) == len(BURSTS_S)  # the model's own threshold
    for name in ("c_empty.wav", "d_truncated.wav", "e_not_audio.wav", "gone.flac"):
        assert set(by_name[name]) == {"file", "error"} and by_name[name]["error"]


def test_cli_exits_0_when_all_files_read_and_threshold_overrides(detector, files):
    _, model_path = detector
    low, high = [start_cli(files["good"], files["stereo"], "--model", model_path, "--threshold", t)
                 for t in ("0.0", "1.01")]
    low, high = finish(low), finish(high)
    assert low.returncode == 0, low.stderr
    assert [r["file"] for r in json_lines(low)] == [str(files["good"]), str(files["stereo"])]
    assert all(set(r) == RECORD_KEYS and r["detections"] for r in json_lines(low))
    assert high.returncode == 0 and [r["detections"] for r in json_lines(high)] == [[], []]


def test_cli_uses_the_models_refractory_period_unless_a_flag_overrides_it(detector, files, tmp_path):
    model, _ = detector
    model.set_detection_config(model.detection_config(refractory_s=9.0))
    try:
        save_model(model, tmp_path / "detector.pt")
    finally:
        model.metadata.pop("detection")
    procs = [start_cli(files["good"], "--model", tmp_path / "detector.pt", *flags)
             for flags in ([], ["--refractory-s", "1.0"], ["--smoothing-steps", "0"])]
    own, flag, bad = map(finish, procs)
    assert [len(r["detections"]) for r in json_lines(own)] == [1]
    assert [len(r["detections"]) for r in json_lines(flag)] == [len(BURSTS_S)]
    assert bad.returncode == 2 and bad.stderr.startswith("error: --smoothing-steps") and not bad.stdout


REGISTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import mlflow
    from mlflow.pyfunc import PythonModel

    class Detector(PythonModel):  # what the register stage logs: the detector file as an artifact
        def predict(self, context, model_input, params=None):
            return model_input

    detector, name, artifacts = sys.argv[1:]
    experiment = mlflow.create_experiment("detect-test", artifact_location=Path(artifacts).as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="model", python_model=Detector(), artifacts={"detector": detector},
                                       pip_requirements=[], registered_model_name=name)
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)
""")


@pytest.fixture(scope="module")
def registry(detector, tmp_path_factory) -> str:
    """A sqlite MLflow store where `trigger-word-test-phrase` has a champion."""
    _, model_path = detector
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-c", REGISTER, str(model_path), "trigger-word-test-phrase",
                           str(root / "artifacts")], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 0, proc.stderr
    return uri


def test_cli_loads_the_champion_of_a_word_from_mlflow(detector, files, registry):
    model, _ = detector
    proc = run_cli(files["good"], "--word", "Test Phrase", env={"MLFLOW_TRACKING_URI": registry})
    assert proc.returncode == 0, proc.stderr
    [record] = json_lines(proc)
    assert record == {"file": str(files["good"]), **detect_file(model, files["good"])}


def test_cli_without_a_model_says_why_on_one_line_and_exits_2(files, registry, tmp_path):
    cases = [(["--model", tmp_path / "missing.pt"], {}, "no such file"),
             ([], {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}"}, "cs230 run trigger-word"),
             (["--word", "never registered"], {"MLFLOW_TRACKING_URI": registry},
              'cs230 run trigger-word --set trigger_word.word="never registered"')]
    procs = [start_cli(files["good"], *args, env=env) for args, env, _ in cases]
    for proc, (_, _, says) in zip(map(finish, procs), cases):
        assert proc.returncode == 2 and proc.stdout == ""
        assert "Traceback" not in proc.stderr, proc.stderr
        [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert says in line
    assert not (tmp_path / "none.db").exists()  # asking did not create an empty store
