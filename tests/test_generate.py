"""The generator: deterministic, labels aligned with the manifest and with the audio."""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from components.audio.clips import extended_pulse_labels, place_without_overlap
from components.config import load_params
from components.tasks.trigger_word.generate import run
from conftest import PROJECT_ROOT, TINY, write_params


def test_extended_pulse_labels_hand_built():
    labels = extended_pulse_labels([1.0, 3.05], n_steps=250, step_s=0.02, pulse_steps=3)
    assert labels.tolist().count(1) == 6
    assert labels[50:53].tolist() == [1, 1, 1] and labels[49] == 0 and labels[53] == 0
    assert labels[152:155].tolist() == [1, 1, 1]
    assert extended_pulse_labels([4.99], 250, 0.02, 5)[249] == 1  # a pulse at the end is cut, not wrapped


def test_place_without_overlap_keeps_gaps_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = rng.integers(100, 2000, size=rng.integers(1, 8)).tolist()
        starts = place_without_overlap(lengths, 16000, 50, rng)
        spans = sorted((s, s + n) for s, n in zip(starts, lengths))
        assert spans[0][0] >= 0 and spans[-1][1] <= 16000
        assert all(b[0] - a[1] >= 50 for a, b in zip(spans, spans[1:]))
    assert place_without_overlap([9000, 9000], 16000, 0, rng) is None


def test_manifest_covers_every_subset(tiny_dataset):
    m = pd.read_csv(tiny_dataset / "manifest.csv")
    assert set(m.subset) == {"main", "unseen_voice", "negative_stream"}
    assert (m.subset == "main").sum() == TINY["clips"]["main"]
    assert (m[m.subset == "negative_stream"].n_triggers == 0).all()
    held_out = load_params(PROJECT_ROOT / "params.yaml").trigger_word.speech.held_out_family
    assert set(m[m.subset == "unseen_voice"].voice_family) <= {held_out, "none"}
    assert held_out not in set(m[m.subset != "unseen_voice"].voice_family)
    for f in m.file:
        info = sf.info(str(tiny_dataset / f))
        assert info.samplerate == 16000 and info.channels == 1


def test_labels_match_manifest_and_audio(tiny_dataset):
    """Each trigger's pulse starts at its end step, and the manifest's word spans are
    where the speech energy is (checked on the real clips)."""
    m = pd.read_csv(tiny_dataset / "manifest.csv")
    labels = np.load(tiny_dataset / "labels.npy")
    step = 0.02
    checked = 0
    for row in m[(m.subset == "main")].itertuples():
        lab = labels[row.label_row]
        triggers = json.loads(row.triggers)
        assert lab.sum() == 0 if not triggers else lab.sum() > 0
        for start, end in triggers:
            assert lab[int(end / step)] == 1
            assert int(end / step) == 0 or lab[int(end / step) - 1] == 0 or any(
                int(e / step) < int(end / step) <= int(e / step) + 15 for _, e in triggers if e != end)
        if row.snr_db >= 20 and triggers:   # clean clips: speech spans are much louder than the rest
            audio, sr = sf.read(str(tiny_dataset / row.file))
            words = json.loads(row.triggers) + [w[:2] for w in json.loads(row.negatives)]
            inside = np.zeros(len(audio), bool)
            for s, e in words:
                inside[int(s * sr):int(e * sr)] = True
            assert np.sqrt(np.mean(audio[inside] ** 2)) > 2 * np.sqrt(np.mean(audio[~inside] ** 2))
            checked += 1
    assert checked >= 5


def test_generation_is_deterministic_across_worker_counts(tmp_path, tiny_dataset, tts_cache):
    changes = {**TINY, "generate": {**TINY["generate"], "workers": 1}}
    params = load_params(write_params(tmp_path / "params.yaml", changes)).trigger_word
    run(params, tmp_path / "no-raw", tmp_path / "generated", tmp_path / "report", tts_cache)
    a, b = tiny_dataset, tmp_path / "generated"
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    assert np.array_equal(np.load(a / "labels.npy"), np.load(b / "labels.npy"))
    for f in pd.read_csv(a / "manifest.csv").file:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_different_seed_gives_different_data(tmp_path, tiny_dataset, tts_cache):
    changes = {**TINY, "seed": 1, "clips": {"main": 12, "unseen_voice": 2}, "negative_stream": {"minutes": 1.0, "groups": 2}}
    params = load_params(write_params(tmp_path / "params.yaml", changes)).trigger_word
    run(params, tmp_path / "no-raw", tmp_path / "generated", tmp_path / "report", tts_cache)
    first = (tmp_path / "generated" / "clips" / "main-00000.wav").read_bytes()
    assert first != (tiny_dataset / "clips" / "main-00000.wav").read_bytes()


def test_recordings_in_raw_backgrounds_are_used(tmp_path, tts_cache):
    raw = tmp_path / "backgrounds"
    raw.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):  # one recording in most groups, at a rate that needs resampling
        sf.write(str(raw / f"street-{i}.wav"), (0.1 * rng.standard_normal(44100 * 3)).astype("float32"), 44100)
    changes = {**TINY, "clips": {"main": 40, "unseen_voice": 2}, "negative_stream": {"minutes": 1.0, "groups": 2},
               "backgrounds": {"recorded_prob": 1.0}}
    params = load_params(write_params(tmp_path / "params.yaml", changes)).trigger_word
    run(params, raw, tmp_path / "generated", tmp_path / "report", tts_cache)
    m = pd.read_csv(tmp_path / "generated" / "manifest.csv")
    recorded = m[m.background == "recorded"]
    assert len(recorded) > 10
    assert recorded.background_file.str.startswith("street-").all()
    assert (raw / "street-0.wav").exists()   # inputs are read, never moved or changed
