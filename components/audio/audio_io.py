"""Reading and writing audio files: any rate and channel count in, 16 kHz mono out."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from components.errors import InputError, first_line

AUDIO_SUFFIXES = (".wav", ".flac")
BLOCK_SECONDS = 10.0  # audio read per step when streaming: ~1 MB at 48 kHz stereo
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data sizes streaming writers leave in the header


class AudioReadError(InputError):
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


def _wav_truncation(f, file_size: int) -> str | None:
    """Why a RIFF/WAVE file is cut short (its data chunk runs past the end), else None."""
    f.seek(0)
    if f.read(4) != b"RIFF" or f.read(8)[4:] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= file_size:
        f.seek(pos)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        if chunk_id == b"data":
            held = file_size - pos - 8
            if size not in _WAV_UNKNOWN_SIZES and size > held:
                return f"truncated WAV: the header declares {size} bytes of audio, the file holds {held}"
            return None
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    return None


def stream_audio(path: Path, sample_rate: int, block_seconds: float = BLOCK_SECONDS,
                 info: dict | None = None) -> Iterator[np.ndarray]:
    """float32 mono chunks at `sample_rate`, in order, without reading the file whole.

    Channels are averaged and other rates resampled with soxr (HQ, as `read_audio`). When
    the stream ends, `info` (if given) holds `frames` and `rate` of the file as read.
    Raises AudioReadError for unreadable, empty, truncated or non-finite audio.
    """
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise AudioReadError(f"cannot open ({exc.strerror})") from None
    with f:
        truncated = _wav_truncation(f, os.fstat(f.fileno()).st_size)
        if truncated:
            raise AudioReadError(truncated)
        f.seek(0)
        try:
            snd = sf.SoundFile(f)
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
            raise AudioReadError(f"not readable audio ({first_line(exc)})") from None
        with snd:
            rate, declared = snd.samplerate, snd.frames
            resampler = (soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
                         if rate != sample_rate else None)
            frames = 0
            blocks = snd.blocks(max(int(block_seconds * rate), 1), dtype="float32", always_2d=True)
            try:
                for block in blocks:
                    if not np.all(np.isfinite(block)):
                        raise AudioReadError("audio holds NaN or infinite samples")
                    frames += len(block)
                    mono = block.mean(axis=1)
                    yield resampler.resample_chunk(mono) if resampler else mono
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise AudioReadError(f"decoding failed ({first_line(exc)})") from None
            if frames == 0:
                raise AudioReadError("empty audio (no samples)")
            if frames < declared:
                raise AudioReadError(f"truncated: the header declares {declared} frames, decoded {frames}")
            if resampler:
                yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if info is not None:
        info.update(frames=frames, rate=rate)
