"""Behaviour of the background synthesis, SNR mixing and speech augmentation (components/audio)."""
import numpy as np
import pytest
from scipy import signal

from components.audio.augment import (apply_gain_db, augment_word, biquad_sos, random_eq,
                                      reverberate, speed_perturb, synth_room_impulse_response)
from components.audio.backgrounds import (SYNTHETIC_KINDS, load_recording_segment, mix_at_snr,
                                          synth_background)
from components.config import AugmentParams, load_params

SAMPLE_RATE = 16_000
CLIP_SAMPLES = 10 * SAMPLE_RATE
AUGMENT = load_params().trigger_word.augment  # params.yaml's ranges (speed 0.9-1.1)


def fake_word(rng: np.random.Generator) -> np.ndarray:
    """A word-like burst: a harmonic tone with a random pitch, length and a smooth envelope."""
    length = int(rng.uniform(0.2, 0.8) * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    f0 = rng.uniform(90.0, 250.0)
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    return (rng.uniform(0.05, 0.5) * tone * np.hanning(length)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_pool() -> list[np.ndarray]:
    rng = np.random.default_rng(123)
    return [fake_word(rng) for _ in range(30)]


def background(kind: str, seed: int, pool, n_samples: int = CLIP_SAMPLES) -> np.ndarray:
    return synth_background(kind, n_samples, SAMPLE_RATE, np.random.default_rng(seed), speech_pool=pool)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def octave_slope_db(x: np.ndarray, low_hz: float = 100.0, high_hz: float = 4000.0) -> float:
    """Least-squares slope of the Welch PSD in dB per octave between low_hz and high_hz."""
    freqs, psd = signal.welch(x, fs=SAMPLE_RATE, nperseg=4096)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(psd[band]), 1)[0])


# --- backgrounds ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
@pytest.mark.parametrize("n_samples", [CLIP_SAMPLES, 12_345])
def test_every_kind_is_exact_length_finite_float32_unit_rms(kind, n_samples, speech_pool):
    for seed in range(3):
        x = background(kind, seed, speech_pool, n_samples)
        assert x.shape == (n_samples,) and x.dtype == np.float32
        assert np.isfinite(x).all()
        assert rms(x) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
def test_every_kind_is_deterministic_per_seed_and_differs_across_seeds(kind, speech_pool):
    np.testing.assert_array_equal(background(kind, 7, speech_pool), background(kind, 7, speech_pool))
    assert not np.allclose(background(kind, 7, speech_pool), background(kind, 8, speech_pool))


@pytest.mark.parametrize("kind, expected_db_per_octave", [("white", 0.0), ("pink", -3.01), ("brown", -6.02)])
def test_coloured_noise_has_the_expected_spectral_slope(kind, expected_db_per_octave):
    for seed in range(3):
        assert octave_slope_db(background(kind, seed, ())) == pytest.approx(expected_db_per_octave, abs=0.5)


def test_hum_has_its_spectral_peak_at_the_mains_frequency():
    mains_seen = set()
    for seed in range(8):
        freqs, psd = signal.welch(background("hum", seed, ()), fs=SAMPLE_RATE, nperseg=SAMPLE_RATE)  # 1 Hz bins
        peak_hz = freqs[np.argmax(psd)]
        mains = 50.0 if abs(peak_hz - 50.0) < abs(peak_hz - 60.0) else 60.0
        assert abs(peak_hz - mains) <= 1.0
        mains_seen.add(mains)
    assert mains_seen == {50.0, 60.0}


def test_babble_is_band_limited_speech_like_noise(speech_pool):
    x = background("babble", 0, speech_pool)
    freqs, psd = signal.welch(x, fs=SAMPLE_RATE, nperseg=2048)
    assert psd[freqs < 40].mean() < 0.01 * psd[(freqs > 100) & (freqs < 1000)].mean()  # high-passed
    # Several overlapped talkers leave almost no silent stretches (unlike a single talker).
    frame_rms = np.sqrt(np.mean(x.reshape(-1, 320) ** 2, axis=1))
    assert np.mean(frame_rms < 0.05) < 0.1


def test_babble_without_speech_raises():
    with pytest.raises(ValueError, match="speech_pool"):
        background("babble", 0, ())
    with pytest.raises(ValueError, match="speech_pool"):
        background("babble", 0, [np.zeros(0, np.float32)])


def test_unknown_kind_raises_naming_it_and_the_allowed_kinds():
    with pytest.raises(ValueError, match="'traffic'.*pink"):
        background("traffic", 0, ())


def test_recording_segment_is_a_normalised_window_of_a_long_recording():
    recording = np.random.default_rng(0).standard_normal(5 * CLIP_SAMPLES).astype(np.float32)
    segment = load_recording_segment(recording, CLIP_SAMPLES, np.random.default_rng(1))
    assert segment.shape == (CLIP_SAMPLES,) and segment.dtype == np.float32
    assert rms(segment) == pytest.approx(1.0, rel=1e-4)
    start = int(np.argmax(signal.correlate(recording, segment, mode="valid", method="fft")))
    window = recording[start:start + CLIP_SAMPLES]
    np.testing.assert_allclose(segment * rms(window), window, rtol=1e-4, atol=1e-5)


def test_short_recording_is_looped():
    recording = np.arange(1, 1001, dtype=np.float32)
    segment = load_recording_segment(recording, 2500, np.random.default_rng(0))
    steps = np.diff(segment)
    assert segment.shape == (2500,)
    assert np.sum(steps < 0) in (2, 3)  # wraps from the last sample back to the first
    np.testing.assert_allclose(steps[steps > 0], steps[steps > 0][0], rtol=1e-4)


def test_silent_recording_raises():
    with pytest.raises(ValueError):
        load_recording_segment(np.zeros(CLIP_SAMPLES, np.float32), CLIP_SAMPLES, np.random.default_rng(0))


# --- SNR mixing ----------------------------------------------------------------------------

def sine_burst(clip_samples: int, burst_start: int, burst_samples: int, amplitude: float) -> np.ndarray:
    """A 500 Hz burst (whole periods, phase chosen so no sample is near zero) in silence; power amplitude**2 / 2."""
    t = np.arange(burst_samples)
    speech = np.zeros(clip_samples, np.float32)
    speech[burst_start:burst_start + burst_samples] = amplitude * np.sin(2 * np.pi * (t + 0.5) / 32)
    return speech


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_mix_at_snr_hits_the_requested_ratio_over_active_speech(snr_db):
    speech = sine_burst(CLIP_SAMPLES, 40_000, 8_000, amplitude=0.5)
    noise = np.random.default_rng(0).standard_normal(CLIP_SAMPLES).astype(np.float32)
    mix = mix_at_snr(noise, speech, snr_db)
    background_power = np.mean(np.square(mix - speech, dtype=np.float64))
    assert 10 * np.log10((0.5 ** 2 / 2) / background_power) == pytest.approx(snr_db, abs=0.01)


def test_mix_at_snr_ignores_the_silence_around_words():
    noise = np.random.default_rng(0).standard_normal(CLIP_SAMPLES).astype(np.float32)
    short_word = mix_at_snr(noise, sine_burst(CLIP_SAMPLES, 1000, 1600, 0.3), 5.0) - sine_burst(CLIP_SAMPLES, 1000, 1600, 0.3)
    long_word = mix_at_snr(noise, sine_burst(CLIP_SAMPLES, 1000, 64_000, 0.3), 5.0) - sine_burst(CLIP_SAMPLES, 1000, 64_000, 0.3)
    assert rms(short_word) == pytest.approx(rms(long_word), rel=1e-4)


def test_mix_at_snr_rejects_silent_speech_and_mismatched_lengths():
    noise = np.ones(100, np.float32)
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(noise, np.zeros(100, np.float32), 10.0)
    with pytest.raises(ValueError):
        mix_at_snr(noise, np.ones(99, np.float32), 10.0)


# --- augmentation --------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [0.8, 0.9, 1.0, 1.1, 1.25])
def test_speed_perturb_scales_length_and_pitch(factor):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    faster = speed_perturb(tone, factor)
    assert faster.dtype == np.float32
    assert abs(faster.size - SAMPLE_RATE / factor) <= 1
    freqs, psd = signal.welch(faster, fs=SAMPLE_RATE, nperseg=4096)
    assert freqs[np.argmax(psd)] == pytest.approx(1000.0 * factor, abs=8.0)


def test_room_impulse_response_has_its_direct_path_first_and_unit_energy():
    for seed, rt60 in enumerate([0.15, 0.4, 0.8]):
        rir = synth_room_impulse_response(np.random.default_rng(seed), SAMPLE_RATE, rt60)
        assert rir.dtype == np.float32 and rir.size == int(rt60 * SAMPLE_RATE)
        assert np.argmax(np.abs(rir)) == 0
        assert np.sum(rir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-4)
        late = rir[int(0.9 * rir.size):]
        assert np.sum(late ** 2) < 1e-4  # has decayed by ~50 dB near its end


def test_reverberate_keeps_length_and_an_impulse_at_its_index():
    rng = np.random.default_rng(0)
    impulse = np.zeros(CLIP_SAMPLES, np.float32)
    impulse[12_345] = 1.0
    for rt60 in [0.15, 0.8]:
        wet = reverberate(impulse, synth_room_impulse_response(rng, SAMPLE_RATE, rt60))
        assert wet.shape == impulse.shape and wet.dtype == np.float32
        assert np.argmax(np.abs(wet)) == 12_345
        assert np.abs(wet[:12_345]).max() < 1e-6  # causal: nothing before the direct sound (FFT rounding aside)


def test_reverberate_roughly_preserves_energy():
    noise = np.random.default_rng(1).standard_normal(CLIP_SAMPLES).astype(np.float32)
    for seed in range(5):
        wet = reverberate(noise, synth_room_impulse_response(np.random.default_rng(seed), SAMPLE_RATE, 0.5))
        assert 20 * np.log10(rms(wet) / rms(noise)) == pytest.approx(0.0, abs=1.5)


def test_random_eq_keeps_length_and_stays_finite():
    word = fake_word(np.random.default_rng(0))
    for seed in range(20):
        coloured = random_eq(word, np.random.default_rng(seed), SAMPLE_RATE)
        assert coloured.shape == word.shape and coloured.dtype == np.float32
        assert np.isfinite(coloured).all() and not np.allclose(coloured, word)


@pytest.mark.parametrize("kind, probe_hz, expected_db", [
    ("lowpass", 1000.0, -3.01), ("highpass", 1000.0, -3.01), ("peaking", 1000.0, 6.0),
    ("lowshelf", 10.0, 6.0), ("highshelf", 7900.0, 6.0), ("lowshelf", 7900.0, 0.0)])
def test_biquad_sections_have_the_cookbook_response(kind, probe_hz, expected_db):
    sos = biquad_sos(kind, 1000.0, SAMPLE_RATE, gain_db=6.0)
    _, response = signal.sosfreqz(sos, worN=[probe_hz], fs=SAMPLE_RATE)
    assert 20 * np.log10(np.abs(response[0])) == pytest.approx(expected_db, abs=0.1)


def test_apply_gain_db():
    x = np.ones(4, np.float32)
    np.testing.assert_allclose(apply_gain_db(x, 20.0), 10.0, rtol=1e-6)
    assert apply_gain_db(x, -6.0206).dtype == np.float32


def test_augment_word_is_deterministic_and_within_the_configured_speed():
    word, cfg = fake_word(np.random.default_rng(0)), AUGMENT
    first = augment_word(word, np.random.default_rng(5), SAMPLE_RATE, cfg)
    np.testing.assert_array_equal(first, augment_word(word, np.random.default_rng(5), SAMPLE_RATE, cfg))
    for seed in range(10):
        out = augment_word(word, np.random.default_rng(seed), SAMPLE_RATE, cfg)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert word.size / 1.1 - 1 <= out.size <= word.size / 0.9 + 1


@pytest.mark.parametrize("bad", [dict(speed_range=[1.1, 0.9]), dict(speed_range=[0.0, 1.0]),
                                 dict(rt60_range=[0.0, 0.5]), dict(eq_prob=1.5), dict(reverb_prob=-0.1)])
def test_augment_params_reject_bad_ranges(bad):
    with pytest.raises(ValueError):
        AugmentParams.model_validate({**AUGMENT.model_dump(), **bad})
