"""Validate stage (Great Expectations): good data passes, and every check can fail, naming
the offending file, without touching the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from components import validate
from components.tasks.trigger_word import generate
from components.config import load_params
from components.audio.data_checks import label_pulses_match, wav_is_complete, words_disjoint
from components.stage_cli import StageError

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
SR = 16000
TINY = [  # a dataset small enough to generate in seconds, big enough for balance checks
    "trigger_word.speech.trigger_renders=60", "trigger_word.speech.random_negative_words=20",
    "trigger_word.speech.renders_per_negative_word=2", "trigger_word.clips.main=100",
    "trigger_word.clips.unseen_voice=20", "trigger_word.negative_stream.minutes=5",
    "trigger_word.negative_stream.groups=2", "trigger_word.generate.groups=10",
    "trigger_word.validation.family_balance_tolerance=0.8",  # ~12 clips a family: chance moves one by half
]


@pytest.fixture(scope="module")
def params():
    return load_params(PARAMS_FILE, TINY).trigger_word


def tone(seconds=1.0, rate=SR, level=0.1):
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


# ------------------------------------------------------------------------ pure checks

def test_label_pulses_follow_trigger_ends():
    labels = np.zeros(100, np.uint8)
    labels[10:15] = 1                                       # one word ending at 0.2 s, K = 5
    assert label_pulses_match(labels, [0.2], 0.02, 5)
    assert not label_pulses_match(np.roll(labels, 2), [0.2], 0.02, 5)   # shifted
    assert not label_pulses_match(labels, [], 0.02, 5)                  # pulse without a word
    assert not label_pulses_match(np.zeros(100, np.uint8), [0.2], 0.02, 5)  # word without a pulse
    labels[12:18] = 1                                       # a second end at step 13: runs merge
    assert label_pulses_match(labels, [0.2, 0.26], 0.02, 5)


def test_words_disjoint_and_wav_truncation(tmp_path):
    assert words_disjoint([[1.0, 1.5]], [[1.5, 2.0, "act"]], 10.0)
    assert not words_disjoint([[1.0, 1.6]], [[1.5, 2.0, "act"]], 10.0)
    sf.write(tmp_path / "a.wav", tone(), SR, subtype="PCM_16")
    data = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    assert wav_is_complete(tmp_path / "a.wav") and not wav_is_complete(tmp_path / "cut.wav")


# -------------------------------------------------------------------------- raw suite

def _bad_files(d: Path) -> dict[str, tuple[str, str]]:
    """name -> (file, check expected to fail), each written into d."""
    rng = np.random.default_rng(0)
    (d / "corrupt.wav").write_bytes(rng.bytes(4000))
    sf.write(d / "full.wav", tone(), SR, subtype="PCM_16")
    whole = (d / "full.wav").read_bytes()
    (d / "full.wav").unlink()
    (d / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    sf.write(d / "silent.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    sf.write(d / "clipped.wav", np.clip(tone() * 20, -1, 1), SR, subtype="PCM_16")
    sf.write(d / "odd_rate.wav", tone(rate=7000), 7000, subtype="PCM_16")
    (d / "notes.txt").write_text("not audio")
    with_nan = tone()
    with_nan[10] = np.nan
    sf.write(d / "nan.wav", with_nan, SR, subtype="FLOAT")
    return {"corrupt": ("corrupt.wav", "decodes"), "truncated": ("truncated.wav", "not_truncated"),
            "silent": ("silent.wav", "not_silent"), "clipped": ("clipped.wav", "not_clipped"),
            "rate": ("odd_rate.wav", "sample_rate_accepted"), "not_audio": ("notes.txt", "audio_file"),
            "nan": ("nan.wav", "finite")}


def test_raw_good_recordings_pass(params, tmp_path):
    (tmp_path / "bg" / "street").mkdir(parents=True)
    sf.write(tmp_path / "bg" / "street" / "a.flac", np.stack([tone(2, 44100)] * 2, 1), 44100)
    sf.write(tmp_path / "bg" / "b.wav", tone(), SR, subtype="PCM_16")
    summary = validate.run("trigger-word", "raw", params, tmp_path / "bg", tmp_path / "report")
    assert summary["success"] and summary["files"] == 2
    result = json.loads((tmp_path / "report" / "result.json").read_text())
    assert result["success"] and all(c["success"] for c in result["checks"])
    html = (tmp_path / "report" / "report" / "index.html").read_text()
    docs = tmp_path / "report" / "report" / "data_docs"
    assert (docs / "index.html").is_file()
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 1 and pages[0].relative_to(docs.parent).as_posix() in html


def test_raw_absent_or_empty_folder_passes(params, tmp_path):
    (tmp_path / "empty").mkdir()
    assert validate.run("trigger-word", "raw", params, tmp_path / "absent", tmp_path / "r1")["files"] == 0
    assert validate.run("trigger-word", "raw", params, tmp_path / "empty", tmp_path / "r2")["success"]


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "silent", "clipped", "rate", "not_audio", "nan"])
def test_raw_bad_file_fails_naming_it_and_is_kept(params, tmp_path, kind):
    scratch = tmp_path / "all"
    scratch.mkdir()
    name, check = _bad_files(scratch)[kind]
    bg = tmp_path / "bg"
    bg.mkdir()
    sf.write(bg / "good.wav", tone(), SR, subtype="PCM_16")
    shutil.copy(scratch / name, bg / name)
    before = (bg / name).read_bytes()
    with pytest.raises(StageError) as err:
        validate.run("trigger-word", "raw", params, bg, tmp_path / "report")
    message = str(err.value)
    assert "\n" not in message
    assert f"1 of 7 checks failed: {check} ({name})" in message
    assert str(tmp_path / "report" / "report" / "index.html") in message
    assert (bg / name).read_bytes() == before  # reported, never deleted or modified
    result = json.loads((tmp_path / "report" / "result.json").read_text())
    assert [c["offending"] for c in result["checks"] if not c["success"]] == [[name]]


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    bg = tmp_path / "bg"
    bg.mkdir()
    (bg / "junk.wav").write_bytes(b"RIFF0000WAVEjunk" * 10)
    code = validate.main(["trigger-word", "raw", "--params", str(PARAMS_FILE), "--data", str(bg), "--report", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: validate raw:") and err.count("\n") == 1 and "junk.wav" in err


# -------------------------------------------------------------------- generated suite

@pytest.fixture(scope="module")
def dataset(params, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    generate.run(params, root / "no_raw", root / "data", root / "gen_report", root / "tts_cache")
    return root / "data"


@pytest.fixture
def copy(dataset, tmp_path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "data"))


def _positive_row(data: Path) -> pd.Series:
    manifest = pd.read_csv(data / "manifest.csv")
    return manifest[(manifest.subset == "main") & (manifest.n_triggers > 0)].iloc[3]


def _failure(params, data: Path, report: Path) -> tuple[str, dict]:
    with pytest.raises(StageError) as err:
        validate.run("trigger-word", "generated", params, data, report)
    return str(err.value), {c["check"]: c for c in json.loads((report / "result.json").read_text())["checks"]}


def test_generated_dataset_passes(params, dataset, tmp_path):
    summary = validate.run("trigger-word", "generated", params, dataset, tmp_path / "report")
    assert summary["success"] and summary["files"] == 125 and summary["checks"] == 13
    pages = {p.stem for p in (tmp_path / "report" / "report" / "data_docs" / "validations").rglob("*.html")}
    assert pages == {"generated-files", "generated-families"}


def _nan_wav(path):
    x = tone(10)
    x[100] = np.nan
    sf.write(path, x, SR, subtype="FLOAT")


CORRUPTIONS = {  # check -> how to break one file of a copy
    "finite": _nan_wav,
    "sample_rate": lambda path: sf.write(path, tone(10, 8000), 8000, subtype="PCM_16"),
    "duration_exact": lambda path: sf.write(path, tone(9.5), SR, subtype="PCM_16"),
    "file_exists": lambda path: path.unlink(),
    "decodes": lambda path: path.write_bytes(b"\0" * 1000),
    "peak": lambda path: sf.write(path, np.clip(tone(10, level=2.0), -1, 1), SR, subtype="PCM_16"),
    "rms": lambda path: sf.write(path, tone(10, level=1e-4), SR, subtype="PCM_16"),
}


@pytest.mark.parametrize("check", CORRUPTIONS)
def test_generated_bad_audio_fails(params, copy, tmp_path, check):
    row = _positive_row(copy)
    CORRUPTIONS[check](copy / row.file)
    message, checks = _failure(params, copy, tmp_path / "report")
    assert f"{check} ({row.file})" in message and not checks[check]["success"]


def test_shifted_label_pulse_fails(params, copy, tmp_path):
    row = _positive_row(copy)
    labels = np.load(copy / "labels.npy")
    labels[row.label_row] = np.roll(labels[row.label_row], 3)
    np.save(copy / "labels.npy", labels)
    message, _ = _failure(params, copy, tmp_path / "report")
    assert "1 of 13 checks failed" in message and f"labels_at_trigger_ends ({row.file})" in message


def test_manifest_errors_fail(params, copy, tmp_path):
    manifest = pd.read_csv(copy / "manifest.csv")
    main = manifest.index[(manifest.subset == "main") & (manifest.n_triggers > 0)]
    start, end = json.loads(manifest.at[main[0], "triggers"])[0]
    manifest.at[main[0], "negatives"] = json.dumps([[start + 0.05, end + 0.2, "active"]])  # overlaps a trigger
    manifest.at[main[1], "voice_family"] = params.speech.held_out_family
    manifest.at[main[2], "subset"] = "training"
    manifest.to_csv(copy / "manifest.csv", index=False)
    message, checks = _failure(params, copy, tmp_path / "report")
    for check, i in [("words_do_not_overlap", 0), ("held_out_family_isolated", 1), ("subset_known", 2)]:
        assert check in message and checks[check]["offending"] == [manifest.at[main[i], "file"]]


def test_balance_checks_fail(params, dataset, tmp_path):
    strict = params.model_copy(update={"validation": params.validation.model_copy(update={
        "min_positive_share": 0.9, "max_positive_share": 1.0, "family_balance_tolerance": 0.01})})
    message, checks = _failure(strict, dataset, tmp_path / "report")
    assert "positive_share (observed" in message and "family_balance (" in message
    assert checks["family_balance"]["offending"]  # names the families out of balance
    assert (dataset / "manifest.csv").is_file()


def test_missing_manifest_is_a_stage_error(params, tmp_path):
    with pytest.raises(StageError, match="run the generate stage first"):
        validate.run("trigger-word", "generated", params, tmp_path / "nothing", tmp_path / "report")
