"""Specification of the trigger-word features and model: shapes, reference values,
causality, streaming == offline, size budget and the saved-model round trip."""
import dataclasses

import librosa
import numpy as np
import pytest
import torch

from components.audio.features import FeatureConfig, LogMel, fit_normalisation
from components.audio.model import ModelConfig, TriggerWordModel, load_model, save_model
from components.config import load_params
from conftest import trigger_word_model

SR = 16000
P = load_params().trigger_word
FEATURES = FeatureConfig.from_params(P)  # params.yaml's: 25 ms windows every 10 ms, 40 mel bands


def reference_logmel(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Plain numpy: causal framing, periodic Hann, rfft power, librosa mel bank, log."""
    padded = np.concatenate([np.zeros(cfg.win_length - cfg.hop_length), wave.astype(np.float64)])
    n_frames = len(wave) // cfg.hop_length
    n = np.arange(cfg.win_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)
    frames = np.stack([padded[t * cfg.hop_length: t * cfg.hop_length + cfg.win_length]
                       for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames * window, n=cfg.n_fft)) ** 2
    mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                              fmin=cfg.fmin, fmax=cfg.fmax).astype(np.float64)
    return np.log(power @ mel.T + 1e-6)


def noisy_tone(n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    return (0.05 * rng.standard_normal(n_samples) + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def random_eval_model(seed: int = 0) -> TriggerWordModel:
    """Random weights plus non-trivial normalisation and BatchNorm statistics."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(FEATURES, mean=tuple(np.linspace(-8, -2, FEATURES.n_mels)),
                              std=tuple(np.linspace(1, 3, FEATURES.n_mels)))
    model = TriggerWordModel(cfg, ModelConfig.from_params(P.model))
    model.norm.running_mean.uniform_(-0.5, 0.5)
    model.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


# --- features -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_samples", [160, 16000, 16159, 32000 + 7])
def test_logmel_shape_is_one_frame_per_hop(n_samples):
    out = LogMel(FEATURES)(torch.zeros(3, n_samples))
    assert out.shape == (3, n_samples // 160, 40)


def test_logmel_matches_numpy_reference():
    cfg = FEATURES
    wave = noisy_tone(SR)
    got = LogMel(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(got, reference_logmel(wave, cfg), atol=1e-4, rtol=0)


def test_logmel_applies_fitted_normalisation():
    wave = noisy_tone(SR)
    cfg = fit_normalisation([wave, noisy_tone(SR, seed=1)], FEATURES)
    assert cfg.fitted and len(cfg.mean) == len(cfg.std) == 40
    expected = (reference_logmel(wave, cfg) - np.array(cfg.mean)) / np.array(cfg.std)
    got = LogMel(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert LogMel(cfg).config == cfg  # the stats survive the module round trip


def test_logmel_frame_never_sees_the_future():
    wave = torch.from_numpy(noisy_tone(SR))[None]
    t = 37  # frame 37 ends at sample 38 * 160
    changed = wave.clone()
    changed[:, (t + 1) * 160:] = torch.randn(1, wave.shape[1] - (t + 1) * 160)
    a, b = LogMel(FEATURES)(wave), LogMel(FEATURES)(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1], b[:, t + 1])


def test_feature_config_round_trips_and_rejects_bad_input():
    cfg = fit_normalisation([noisy_tone(4000)], FEATURES)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        FeatureConfig.from_dict({**cfg.to_dict(), "n_mfcc": 13})
    with pytest.raises(ValueError, match="lacks"):
        FeatureConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "n_mels"})
    with pytest.raises(ValueError):
        dataclasses.replace(FEATURES, mean=(0.0,) * 40)  # std missing
    with pytest.raises(ValueError, match="win_length"):
        load_params(overrides=["trigger_word.features.win_length=600"])  # longer than n_fft


# --- model --------------------------------------------------------------------------------

def test_model_fits_the_size_budget():
    model = trigger_word_model()
    n_params = sum(p.numel() for p in model.parameters())
    assert model.size_bytes() == 4 * n_params < 1_000_000


@pytest.mark.parametrize("n_samples", [320, 16000, 16319, 48000 + 100])
def test_output_steps_are_samples_over_hop_times_stride(n_samples):
    model = trigger_word_model().eval()
    assert model.step_seconds == pytest.approx(0.02)
    with torch.no_grad():
        logits = model(torch.zeros(2, n_samples))
    assert logits.shape == (2, n_samples // 320) == (2, model.output_steps(n_samples))


def test_model_output_is_causal():
    model = random_eval_model()
    wave = torch.from_numpy(noisy_tone(2 * SR))[None]
    u = 40  # step 40 covers audio up to sample 41 * 320
    changed = wave.clone()
    changed[:, (u + 1) * 320:] = 0.0
    with torch.no_grad():
        a, b = model(wave), model(changed)
    torch.testing.assert_close(a[:, : u + 1], b[:, : u + 1], atol=1e-5, rtol=0)


def stream_in_chunks(model, wave: np.ndarray, sizes) -> np.ndarray:
    streamer, outputs, i, k = model.stream(), [], 0, 0
    while i < len(wave):
        size = sizes[k % len(sizes)]
        outputs.append(streamer.process(wave[i: i + size]))
        i, k = i + size, k + 1
    assert streamer.steps_emitted == sum(len(o) for o in outputs)
    return np.concatenate(outputs)


@pytest.mark.parametrize("sizes", [[1], [37], [160], [161], [4000], [1, 4000, 37, 161, 160, 999]])
def test_streaming_equals_whole_clip(sizes):
    model = random_eval_model()
    wave = noisy_tone(SR // 2 if sizes == [1] else 3 * SR + 123)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(wave)[None]))[0].numpy()
    got = stream_in_chunks(model, wave, sizes)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_streaming_a_long_chunk_in_internal_pieces_is_unchanged(monkeypatch):
    import components.audio.model as model_module
    model = random_eval_model()
    wave = noisy_tone(SR)
    whole = stream_in_chunks(model, wave, [len(wave)])
    monkeypatch.setattr(model_module, "MAX_STREAM_PIECE", 1000)
    np.testing.assert_allclose(stream_in_chunks(model, wave, [len(wave)]), whole, atol=1e-6)


def test_stream_reset_starts_a_new_clip_and_accepts_tensors():
    model = random_eval_model()
    wave = noisy_tone(SR)
    streamer = model.stream()
    first = streamer.process(torch.from_numpy(wave))
    streamer.reset()
    np.testing.assert_array_equal(streamer.process(wave), first)
    with pytest.raises(ValueError):
        streamer.process(np.zeros((2, 100)))


def test_streaming_requires_eval_mode():
    with pytest.raises(RuntimeError, match="eval"):
        trigger_word_model().train().stream()


def test_save_load_round_trip_reproduces_outputs(tmp_path):
    model = random_eval_model()
    model.threshold = 0.73
    model.metadata = {"word": "activate"}
    path = tmp_path / "model.pt"
    save_model(model, path)
    torch.load(path, weights_only=True)  # plain tensors and dicts only
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.threshold == 0.73 and loaded.metadata == {"word": "activate"}
    assert loaded.feature_config == model.feature_config and loaded.feature_config.fitted
    assert loaded.model_cfg == model.model_cfg
    wave = torch.from_numpy(noisy_tone(SR))[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave), model(wave), atol=0, rtol=0)


def test_load_rejects_foreign_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a"):
        load_model(path)
