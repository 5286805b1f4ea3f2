"""Speech augmentation for the synthetic wake-word clips: speed, room reverb, EQ and gain.

Words are augmented one at a time (:func:`augment_word`); reverberation is applied by the clip
assembler to the whole speech track, because one room colours every word in a clip. All
functions take and return float32 mono audio and draw randomness only from the caller's
``np.random.Generator``, so a seed reproduces the clip.
"""
from __future__ import annotations

import numpy as np
import soxr
from scipy import signal

from components.config import AugmentParams

# Corner (or centre) frequency ranges for random_eq's tone colouring: bass boost/cut, presence
# or air boost/cut, and one resonance in the speech band (a cheap mic or a small loudspeaker).
_TILT_CORNER_HZ = {"lowshelf": (100.0, 500.0), "highshelf": (2000.0, 6000.0), "peaking": (300.0, 4000.0)}


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (tempo and pitch together, like a tape): length becomes ``len(x) / factor``."""
    if not factor > 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if factor == 1.0 or x.size == 0:
        return x.copy()
    # Reading the samples as if recorded at factor * rate and resampling to rate speeds them up.
    return soxr.resample(x, factor, 1.0, quality="HQ").astype(np.float32, copy=False)


def synth_room_impulse_response(rng: np.random.Generator, sample_rate: int, rt60_s: float) -> np.ndarray:
    """A synthetic room impulse response ``rt60_s`` long (the time to decay by 60 dB), with unit energy.

    The direct path is at index 0 and is the largest tap, so reverberation does not move a word in
    time. A few early reflections (wall bounces, 2-30 ms) follow, then a diffuse tail of Gaussian
    noise decaying exponentially, at a random direct-to-reverberant ratio of -3 to +12 dB.
    """
    if not rt60_s > 0:
        raise ValueError(f"rt60_s must be positive, got {rt60_s}")
    length = max(int(rt60_s * sample_rate), 2)
    t = np.arange(length) / sample_rate
    # Amplitude falls 60 dB (a factor 1000) over rt60: exp(-ln(1000) t / rt60).
    tail = rng.standard_normal(length) * np.exp(-np.log(1000.0) * t / rt60_s)
    tail_onset_s = rng.uniform(0.002, 0.01)  # the diffuse field builds up after the first bounces
    tail *= np.clip((t - tail_onset_s) / 0.005, 0.0, 1.0)
    drr_db = rng.uniform(-3.0, 12.0)
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail ** 2), 1e-12))
    # Keep every tail tap (plus any reflection on top) below the direct path, the alignment anchor.
    rir = np.clip(tail, -0.5, 0.5)
    rir[0] = 1.0  # direct path
    n_reflections = int(rng.integers(2, 7))
    delays = rng.integers(int(0.002 * sample_rate), int(0.03 * sample_rate), n_reflections)
    delays = delays[delays < length]
    rir[delays] += rng.choice((-1.0, 1.0), delays.size) * rng.uniform(0.1, 0.4, delays.size)
    return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir``, cut to ``len(x)``: the reverb tail past the end is dropped so word timing is unchanged.

    With a unit-energy ``rir`` (as :func:`synth_room_impulse_response` gives) the energy is roughly kept.
    """
    x = np.asarray(x, dtype=np.float32)
    rir = np.asarray(rir, dtype=np.float32)
    if rir.size == 0:
        raise ValueError("room impulse response is empty")
    if x.size == 0:
        return x.copy()
    return signal.oaconvolve(x, rir)[:x.size].astype(np.float32, copy=False)


def biquad_sos(kind: str, hz: float, sample_rate: int, q: float = 1 / np.sqrt(2), gain_db: float = 0.0) -> np.ndarray:
    """One second-order section (RBJ audio-EQ cookbook): "lowpass", "highpass", "peaking", "lowshelf" or "highshelf".

    Closed-form coefficients cost microseconds, where ``scipy.signal.butter`` costs ~0.3 ms per
    design; that matters when every word gets its own filter. With the default q a low/high-pass
    is a 2nd-order Butterworth.
    """
    w0 = 2 * np.pi * min(hz, 0.49 * sample_rate) / sample_rate
    cos_w0, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    a = 10 ** (gain_db / 40)  # amplitude at the peak/shelf is a**2 = 10**(gain_db / 20)
    if kind == "lowpass":
        b, den = ((1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2), (1 + alpha, -2 * cos_w0, 1 - alpha)
    elif kind == "highpass":
        b, den = ((1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2), (1 + alpha, -2 * cos_w0, 1 - alpha)
    elif kind == "peaking":
        b, den = (1 + alpha * a, -2 * cos_w0, 1 - alpha * a), (1 + alpha / a, -2 * cos_w0, 1 - alpha / a)
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1  # the two shelves differ only in these signs
        root = 2 * np.sqrt(a) * alpha
        b = (a * ((a + 1) - sign * (a - 1) * cos_w0 + root), sign * 2 * a * ((a - 1) - sign * (a + 1) * cos_w0),
             a * ((a + 1) - sign * (a - 1) * cos_w0 - root))
        den = ((a + 1) + sign * (a - 1) * cos_w0 + root, -sign * 2 * ((a - 1) + sign * (a + 1) * cos_w0),
               (a + 1) + sign * (a - 1) * cos_w0 - root)
    else:
        raise ValueError(f"unknown biquad kind {kind!r}")
    return np.array([[*b, *den]]) / den[0]


def random_eq(x: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """``x`` through a random microphone/channel colouring; same length.

    One of: telephone band (~300-3400 Hz), low-pass at 4-7 kHz, high-pass at 80-300 Hz, or no
    band-limit; plus, with probability 1/2 (always when there is no band-limit), a +-6 dB shelf
    or peak. Each band edge is two identical 2nd-order Butterworth sections (24 dB/octave, -6 dB
    at the corner).
    """
    x = np.asarray(x, dtype=np.float32)
    sections = []
    band = str(rng.choice(("telephone", "lowpass", "highpass", "none")))
    if band in ("telephone", "highpass"):
        hz = rng.uniform(250.0, 350.0) if band == "telephone" else rng.uniform(80.0, 300.0)
        sections += [biquad_sos("highpass", hz, sample_rate)] * 2
    if band in ("telephone", "lowpass"):
        hz = rng.uniform(3000.0, 3600.0) if band == "telephone" else rng.uniform(4000.0, 7000.0)
        sections += [biquad_sos("lowpass", hz, sample_rate)] * 2
    if band == "none" or rng.random() < 0.5:
        kind = str(rng.choice(tuple(_TILT_CORNER_HZ)))
        q = rng.uniform(0.7, 2.0) if kind == "peaking" else 1 / np.sqrt(2)
        sections.append(biquad_sos(kind, rng.uniform(*_TILT_CORNER_HZ[kind]), sample_rate, q=q,
                                   gain_db=rng.uniform(-6.0, 6.0)))
    if x.size == 0:
        return x.copy()
    return signal.sosfilt(np.concatenate(sections), x).astype(np.float32, copy=False)


def apply_gain_db(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` scaled by ``gain_db`` decibels (no clipping: the clip assembler normalises the final mix)."""
    return np.asarray(x, dtype=np.float32) * np.float32(10 ** (gain_db / 20))


def augment_word(x: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: AugmentParams) -> np.ndarray:
    """Speed, then (with probability ``cfg.eq_prob``) EQ, then gain, applied to one isolated word render.

    ``cfg`` is params.yaml's trigger_word.augment: the ranges are drawn from uniformly.

    Reverb is not applied here: the clip assembler reverberates the whole speech track, as one
    room colours every word in a clip.
    """
    x = speed_perturb(x, rng.uniform(*cfg.speed_range))
    if rng.random() < cfg.eq_prob:
        x = random_eq(x, rng, sample_rate)
    return apply_gain_db(x, rng.uniform(*cfg.gain_db_range))

