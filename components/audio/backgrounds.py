"""Backgrounds for the synthetic wake-word clips, and mixing speech over them at a chosen SNR.

Every background is float32, exactly ``n_samples`` long and RMS-normalised to 1.0, so the
clip assembler sets its level in one place (:func:`mix_at_snr`). All randomness comes from
the caller's ``np.random.Generator``: the same generator state gives the same audio.
Each synthetic kind costs a few milliseconds for a 10 s clip (vectorised, no per-sample loops).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.fft
from scipy import signal

from components.audio.augment import biquad_sos

SYNTHETIC_KINDS = ("white", "pink", "brown", "babble", "hum", "tonal")

# Samples quieter than this, relative to the speech peak, are pauses rather than speech when
# measuring speech power for the SNR. Without it a word in a mostly silent 10 s clip would be
# measured as 20 dB quieter than it sounds and the background would be scaled far too low.
ACTIVE_SPEECH_THRESHOLD_DB = -40.0

_NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
_TABLE_SIZE = 4096  # one waveform period for wavetable synthesis; a power of two so index & mask wraps
_SCALES = (  # semitone offsets of the scales the "tonal" background improvises in
    (0, 2, 4, 5, 7, 9, 11),  # major
    (0, 2, 3, 5, 7, 8, 10),  # natural minor
    (0, 2, 4, 7, 9),  # major pentatonic
    (0, 3, 5, 7, 10),  # minor pentatonic
)


def synth_background(kind: str, n_samples: int, sample_rate: int, rng: np.random.Generator,
                     speech_pool: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A float32 mono background of ``n_samples``, RMS-normalised to 1.0 (callers scale it for SNR).

    white/pink/brown: noise with a 1/f**0, 1/f, 1/f**2 power spectrum, slowly varying in level.
    babble: 4-10 overlapping talkers, each a continuous stream of random words from ``speech_pool``.
    hum: 50 or 60 Hz mains hum with harmonics and slight frequency drift, over a low noise floor.
    tonal: music-like note sequences with random scale, timbre and envelope, sometimes chords and clicks.
    """
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {SYNTHETIC_KINDS}")
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if kind in _NOISE_EXPONENTS:
        audio = _coloured_noise(n_samples, sample_rate, rng, _NOISE_EXPONENTS[kind])
        audio *= _slow_level_curve(n_samples, sample_rate, rng, depth_db=3.0)
    elif kind == "babble":
        audio = _babble(n_samples, sample_rate, rng, speech_pool)
    elif kind == "hum":
        audio = _hum(n_samples, sample_rate, rng)
    else:
        audio = _tonal(n_samples, sample_rate, rng)
    return _rms_normalise(audio)


def load_recording_segment(audio: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n_samples`` window of a 16 kHz mono recording, RMS-normalised to 1.0.

    A recording shorter than the window is looped from a random starting point.
    Raises ValueError for an empty or silent recording.
    """
    audio = np.asarray(audio, dtype=np.float32).ravel()
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if audio.size == 0 or not np.any(audio):
        raise ValueError("background recording is empty or silent")
    if audio.size >= n_samples:
        start = int(rng.integers(0, audio.size - n_samples + 1))
        segment = audio[start:start + n_samples]
    else:
        start = int(rng.integers(0, audio.size))
        segment = np.take(audio, np.arange(start, start + n_samples), mode="wrap")
    if not np.any(segment):
        raise ValueError("chosen window of the background recording is silent")
    return _rms_normalise(segment)


def mix_at_snr(background: np.ndarray, speech: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * background``, with ``g`` chosen so that the speech-to-background power ratio is ``snr_db``.

    Convention: speech power is the mean square over *active* speech samples only, those with
    ``|x|`` within ``ACTIVE_SPEECH_THRESHOLD_DB`` (-40 dB) of the speech peak; background power is
    the mean square over the whole background. So a word at 10 dB SNR sounds 10 dB above the
    background however much silence surrounds it. Raises ValueError when the lengths differ or the
    speech is silent (the SNR is undefined then; scale the background directly instead).
    """
    background = np.asarray(background, dtype=np.float32)
    speech = np.asarray(speech, dtype=np.float32)
    if background.shape != speech.shape:
        raise ValueError(f"background {background.shape} and speech {speech.shape} differ in shape")
    magnitude = np.abs(speech)
    peak = float(magnitude.max(initial=0.0))
    if peak == 0.0:
        raise ValueError("speech is silent, so the SNR is undefined")
    active = magnitude >= peak * 10.0 ** (ACTIVE_SPEECH_THRESHOLD_DB / 20.0)
    speech_power = np.mean(np.square(speech[active]), dtype=np.float64)
    background_power = np.mean(np.square(background), dtype=np.float64)
    if background_power == 0.0:
        raise ValueError("background is silent")
    gain = np.sqrt(speech_power / (background_power * 10.0 ** (snr_db / 10.0)))
    return speech + np.float32(gain) * background


def _rms_normalise(audio: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(audio), dtype=np.float64))
    if not rms > 0.0:
        raise ValueError("cannot RMS-normalise silent audio")
    return (audio / rms).astype(np.float32)


def _coloured_noise(n: int, sample_rate: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent, shaped in the frequency domain.

    The spectrum is held flat below 20 Hz so brown noise is not dominated by inaudible drift.
    """
    n_fft = scipy.fft.next_fast_len(max(n, 2), real=True)  # n_fft = 1 would hold only the (zeroed) DC bin
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate).astype(np.float32)
    amplitude = np.maximum(freqs, 20.0) ** np.float32(-exponent / 2.0)
    amplitude[0] = 0.0  # no DC offset
    spectrum = np.empty(freqs.size, dtype=np.complex64)
    spectrum.real = rng.standard_normal(freqs.size, dtype=np.float32)
    spectrum.imag = rng.standard_normal(freqs.size, dtype=np.float32)
    spectrum *= amplitude
    return scipy.fft.irfft(spectrum, n_fft)[:n]


def _slow_random_curve(n: int, sample_rate: int, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A piecewise-linear random curve between ``low`` and ``high``, with a new knot every 0.5-2 s.

    Interpolated at 1/32 of the sample rate and held (2 ms steps at 16 kHz): the steps are far
    too small to hear and it is ~20x cheaper than interpolating every sample.
    """
    hold = 32
    knot_spacing = rng.uniform(0.5, 2.0) * sample_rate
    n_knots = int(np.ceil(n / knot_spacing)) + 2
    positions = (np.arange(n_knots) - rng.uniform(0.0, 1.0)) * knot_spacing
    coarse = np.interp(np.arange(0, n, hold), positions, rng.uniform(low, high, n_knots))
    return np.repeat(coarse.astype(np.float32), hold)[:n]


def _slow_level_curve(n: int, sample_rate: int, rng: np.random.Generator, depth_db: float) -> np.ndarray:
    """Gain that wanders within +-depth_db, as real rooms and machines never hold a constant level."""
    return _slow_random_curve(n, sample_rate, rng, 10.0 ** (-depth_db / 20.0), 10.0 ** (depth_db / 20.0))


def _harmonic_table(amplitudes: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """One period of sum_k a_k sin(2 pi k theta + phi_k), for wavetable playback."""
    theta = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    harmonic = np.arange(1, len(amplitudes) + 1)
    return (np.sin(2 * np.pi * np.outer(theta, harmonic) + phases) @ amplitudes).astype(np.float32)


def _play_table(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Wavetable lookup at the given (non-negative) phase in cycles: one gather instead of one sin per harmonic."""
    return table[(cycles * _TABLE_SIZE).astype(np.int64) & (_TABLE_SIZE - 1)]


def _hum(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    mains_hz = float(rng.choice([50.0, 60.0]))
    n_harmonics = int(rng.integers(3, 9))
    # The fundamental is loudest; harmonics (rectifiers, transformer saturation) fall off randomly.
    amplitudes = np.concatenate([[1.0], rng.uniform(0.05, 0.7, n_harmonics - 1) / np.arange(2, n_harmonics + 1) ** 0.5])
    table = _harmonic_table(amplitudes, rng.uniform(0, 2 * np.pi, n_harmonics))
    # Grid frequency wanders by up to ~0.3 %; integrate it to a phase so the drift is click-free.
    drift = rng.uniform(0.0005, 0.003)
    frequency = mains_hz * _slow_random_curve(n, sample_rate, rng, 1.0 - drift, 1.0 + drift).astype(np.float64)
    hum = _play_table(table, np.cumsum(frequency) / sample_rate)
    hum *= _slow_level_curve(n, sample_rate, rng, depth_db=1.0)
    noise_floor_db = rng.uniform(-40.0, -25.0)
    hum_rms = np.sqrt(np.sum(amplitudes ** 2) / 2)
    return hum + np.float32(hum_rms * 10 ** (noise_floor_db / 20)) * rng.standard_normal(n, dtype=np.float32)


def _babble(n: int, sample_rate: int, rng: np.random.Generator, speech_pool: Sequence[np.ndarray]) -> np.ndarray:
    """4-10 talkers, each a continuous stream of random pool words with short pauses, summed.

    All talkers are cut from one long stream written in place (talkers x samples), so the cost is
    one pass over the chosen words, whatever the pool size; each talker starts mid-word, as
    overheard conversation does.
    """
    if not any(np.size(word) for word in speech_pool):
        raise ValueError("babble needs a non-empty speech_pool of word waveforms")
    n_talkers = int(rng.integers(4, 11))
    needed = n_talkers * n
    max_pause = int(0.25 * sample_rate)
    stream = np.zeros(needed, dtype=np.float32)
    position = -int(rng.integers(0, sample_rate // 2))  # the stream starts before the clip does
    while position < needed:
        # Draw words in batches: one scalar draw per word would cost more than copying the word.
        picks, gains_db, pauses = (rng.integers(0, len(speech_pool), 64), rng.uniform(-6.0, 6.0, 64),
                                   rng.integers(0, max_pause + 1, 64))
        for index, gain_db, pause in zip(picks.tolist(), gains_db.tolist(), pauses.tolist()):
            word = np.asarray(speech_pool[index], dtype=np.float32).ravel()
            # Equalise word loudness first (pool renders differ), then apply the word's own +-6 dB.
            rms = max(np.sqrt(np.dot(word, word) / max(word.size, 1)), 1e-8)
            begin, end = max(position, 0), min(position + word.size, needed)
            if end > begin:
                np.multiply(word[begin - position:end - position], np.float32(10 ** (gain_db / 20) / rms),
                            out=stream[begin:end])
            position += word.size + pause
            if position >= needed:
                break
    talker_gains = (10 ** (rng.uniform(-9.0, 0.0, n_talkers) / 20)).astype(np.float32)
    # einsum, not `@`: a multithreaded BLAS call here stalls badly when other workers share the cores.
    babble = np.einsum("t,tn->n", talker_gains, stream.reshape(n_talkers, n))
    # A little band-limiting: babble is usually heard through a wall, a phone or a cheap speaker.
    band_sections = np.concatenate([biquad_sos("highpass", rng.uniform(80.0, 250.0), sample_rate),
                                    biquad_sos("lowpass", rng.uniform(3500.0, 7000.0), sample_rate)])
    return signal.sosfilt(band_sections, babble)


def _tonal(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Improvised music: a melody in a random scale, sometimes chords and drum-like clicks, over low noise."""
    beat = int(sample_rate * 60.0 / rng.uniform(70.0, 160.0))  # samples per beat
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    root_midi = int(rng.integers(45, 65))

    def midi_at(degree: int) -> int:
        return root_midi + 12 * (degree // len(scale)) + scale[degree % len(scale)]

    # Melody: a random walk over two octaves of the scale, with rests and mixed note values.
    first_beat = -int(rng.integers(0, beat))  # the clip starts somewhere inside a beat
    melody, position, degree = [], first_beat, int(rng.integers(0, len(scale)))
    while position < n:
        length = int(beat * rng.choice((0.5, 1.0, 1.0, 2.0)))
        if rng.random() > 0.15:
            melody.append((position, int(length * rng.uniform(0.6, 1.0)), midi_at(degree), rng.uniform(0.5, 1.0)))
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 2 * len(scale) - 1))
        position += length
    ring_out = 2 * beat + sample_rate  # notes and clicks may ring past the clip end; cut afterwards
    music = np.zeros(n + ring_out, dtype=np.float32)
    _render_notes(music, melody, sample_rate, rng)

    if rng.random() < 0.5:  # chords: a soft triad an octave down, one per bar of four beats
        chords = []
        for bar_start in range(first_beat, n, 4 * beat):
            chord_root = int(rng.choice((0, 3, 4, 5)))
            chords += [(bar_start, 4 * beat, midi_at(chord_root + step) - 12, 0.3) for step in (0, 2, 4)]
        _render_notes(music, chords, sample_rate, rng)

    if rng.random() < 0.5:  # drum-like clicks: decaying noise bursts on (most) beats or half-beats
        click_step = beat // int(rng.choice((1, 2)))
        decay_s = rng.uniform(0.002, 0.02)
        kernel_length = int(5 * decay_s * sample_rate)
        click = rng.standard_normal(kernel_length, dtype=np.float32)
        click *= np.exp(-np.arange(kernel_length) / (decay_s * sample_rate)).astype(np.float32)
        for onset in range(first_beat % click_step, n, click_step):
            if rng.random() < 0.8:
                music[onset:onset + kernel_length] += np.float32(rng.uniform(0.5, 2.0)) * click

    music = music[:n]
    rms = np.sqrt(np.mean(np.square(music), dtype=np.float64)) or 1.0  # an all-rest melody is possible
    noise_floor = rms * 10 ** (rng.uniform(-45.0, -30.0) / 20)
    return music + np.float32(noise_floor) * rng.standard_normal(n, dtype=np.float32)


def _render_notes(out: np.ndarray, notes: list, sample_rate: int, rng: np.random.Generator) -> None:
    """Add (start, held_samples, midi, gain) notes into ``out`` with one random timbre and ADSR envelope."""
    if not notes:
        return
    highest_hz = 440.0 * 2 ** ((max(note[2] for note in notes) - 69) / 12)
    # Random timbre: harmonic roll-off from flute-like to bright, sometimes odd harmonics only
    # (clarinet-like); harmonics stay under 0.45 * sample_rate so nothing aliases.
    n_harmonics = int(max(1, min(rng.integers(1, 9), 0.45 * sample_rate // highest_hz)))
    harmonic = np.arange(1, n_harmonics + 1)
    amplitudes = rng.uniform(0.3, 1.0, n_harmonics) / harmonic ** rng.uniform(0.7, 2.5)
    if rng.random() < 0.3:
        amplitudes[1::2] = 0.0
    table = _harmonic_table(amplitudes, rng.uniform(0, 2 * np.pi, n_harmonics))
    table /= np.abs(table).max()
    # ADSR: the attack+decay and release shapes are shared by every note; only the sustain varies.
    attack, decay, release = (int(rng.uniform(*r) * sample_rate) for r in ((0.003, 0.04), (0.03, 0.15), (0.03, 0.25)))
    sustain = np.float32(rng.uniform(0.3, 0.9))
    attack_decay = np.concatenate([np.linspace(0.0, 1.0, attack, endpoint=False),
                                   np.linspace(1.0, sustain, decay, endpoint=False)]).astype(np.float32)
    release_tail = np.linspace(sustain, 0.0, release, dtype=np.float32)
    for start, held, midi, gain in notes:
        held = max(held, attack + decay)
        envelope = np.concatenate([attack_decay, np.full(held - attack - decay, sustain, np.float32), release_tail])
        begin, end = max(start, 0), min(start + envelope.size, out.size)
        if end <= begin:
            continue
        hz = 440.0 * 2 ** ((midi - 69) / 12)
        cycles = np.arange(begin - start, end - start) * (hz / sample_rate)
        out[begin:end] += _play_table(table, cycles) * (np.float32(gain) * envelope[begin - start:end - start])
