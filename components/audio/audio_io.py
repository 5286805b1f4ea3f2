"""Reading and writing audio files: any rate and channel count in, 16 kHz mono out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_SUFFIXES = (".wav", ".flac")


class AudioReadError(ValueError):
    """A file that is not readable audio; the message says why in one line."""


def read_audio(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """float32 mono at `sample_rate`: channels averaged, resampled with soxr (high quality)."""
    try:
        data, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"not readable audio ({str(exc).splitlines()[0]})") from None
    if data.shape[0] == 0:
        raise AudioReadError("empty audio (no samples)")
    mono = data.mean(axis=1)
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_info(path: Path) -> sf._SoundFileInfo:
    """Header facts (rate, channels, frames) without decoding; raises AudioReadError."""
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"not readable audio ({str(exc).splitlines()[0]})") from None


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV, written to a temporary name then renamed, so no torn files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def find_audio_files(root: Path) -> list[Path]:
    """WAV/FLAC files under `root` (recursive), sorted for a stable order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
