"""Facts about data files, one row per file, for the validate stage's expectation suites.

Everything here is plain pandas/numpy: each check a suite makes becomes a column (a number,
or a boolean for a row-level rule), so Great Expectations only compares columns with
limits and can name the offending rows. Nothing here modifies or deletes a file.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from components.audio.audio_io import AUDIO_SUFFIXES

SUBSETS = ("main", "unseen_voice", "negative_stream")
# A sample this close to full scale counts as clipped (raw recordings only; generated
# audio is held to validation.max_peak instead).
CLIP_LEVEL = 0.999
# voice_family of a clip without any word (the generator writes "none"; "" read as NaN)
NO_VOICE = ("", "none")
_NAN = float("nan")


# ------------------------------------------------------------------------ per-file audio

def wav_is_complete(path: Path) -> bool | None:
    """Whether a RIFF/WAVE file holds all the bytes its data chunk declares; None if the
    file is not RIFF. libsndfile silently decodes a truncated WAV, so we read the header."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
            return None
        order = "big" if head[:4] == b"RIFX" else "little"
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            length = int.from_bytes(chunk[4:], order)
            if chunk[:4] == b"data":
                # RF64 and streamed WAVs leave the 32-bit size unset: nothing to compare
                return head[:4] == b"RF64" or length == 0xFFFFFFFF or offset + 8 + length <= size
            offset += 8 + length + (length & 1)
    return False  # no data chunk before the end of the file


def audio_stats(path: str, clip_level: float = CLIP_LEVEL) -> dict:
    """Decode one file at its native rate: rate, length, finiteness, peak, RMS, clipping."""
    row = {"decodes": False, "complete": None, "sample_rate": _NAN, "n_samples": _NAN, "finite": None,
           "peak": _NAN, "rms": _NAN, "clipped_share": _NAN, "error": ""}
    try:
        declared = sf.info(path).frames
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        row["error"] = f"not readable audio ({str(exc).splitlines()[0]})"
        return row
    if data.size == 0:
        row["error"] = "no samples"
        return row
    complete = len(data) >= declared and wav_is_complete(Path(path)) is not False
    finite = bool(np.isfinite(data).all())
    valid = data if finite else data[np.isfinite(data)]  # NaN/Inf is the `finite` check's finding alone
    magnitude = np.abs(valid)
    row.update(decodes=True, complete=complete, sample_rate=float(rate), n_samples=float(len(data)),
               finite=finite, error="" if complete else "truncated (fewer bytes than the header declares)")
    if magnitude.size:
        row.update(peak=float(magnitude.max()), rms=float(np.sqrt(np.mean(np.square(valid, dtype=np.float64)))),
                   clipped_share=float(np.mean(magnitude >= clip_level)))
    return row


def many_audio_stats(paths: list[Path], workers: int = 0) -> list[dict]:
    """audio_stats for every path, in order, over a process pool (decoding is the cost)."""
    workers = workers or len(os.sched_getaffinity(0))
    names = [str(p) for p in paths]
    if workers == 1 or len(names) < 32:
        return [audio_stats(n) for n in names]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        return list(pool.map(audio_stats, names, chunksize=max(1, len(names) // (workers * 8))))


# ------------------------------------------------------------------------- raw inputs

def raw_file_frame(raw_dir: Path, workers: int = 0) -> pd.DataFrame:
    """One row per file under raw_dir (recursive; hidden files such as .DS_Store skipped).
    Audio checks are null (not judged) for a file that is not .wav/.flac."""
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith(".")) \
        if raw_dir.is_dir() else []
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    stats = dict(zip(audio, many_audio_stats(audio, workers)))
    rows = []
    for path in files:
        row = {"file": path.relative_to(raw_dir).as_posix(), "is_audio": path in stats}
        row.update(stats.get(path, {"decodes": None, "error": "not a .wav/.flac file"}))
        rows.append(row)
    columns = ["file", "is_audio", "decodes", "complete", "sample_rate", "n_samples", "finite",
               "peak", "rms", "clipped_share", "error"]
    return pd.DataFrame(rows, columns=columns).astype({"is_audio": object, "decodes": object, "complete": object})


# ------------------------------------------------------------------- generated dataset

def _spans(text: str) -> list[list]:
    value = json.loads(text) if isinstance(text, str) and text else []
    if not isinstance(value, list):
        raise ValueError("not a JSON list")
    return value


def label_pulses_match(labels: np.ndarray, trigger_ends_s: list[float], step_s: float, pulse_steps: int) -> bool:
    """Every run of ones starts at the step of a trigger word's end and lasts pulse_steps from
    the last end inside it (runs of close words merge); every end's step is 1; no trigger:
    all zero. Written from the label definition, not from the generator's code."""
    n = len(labels)
    ends = sorted({int(e / step_s) for e in trigger_ends_s if int(e / step_s) < n})
    ones = labels.astype(bool)
    if not all(ones[s] for s in ends):
        return False
    edges = np.diff(np.concatenate([[0], ones.astype(np.int8), [0]]))
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        inside = [s for s in ends if start <= s < stop]
        if not inside or inside[0] != start or stop != min(n, inside[-1] + pulse_steps):
            return False
        if any(b > a + pulse_steps for a, b in zip(inside, inside[1:])):  # a gap filled with ones
            return False
    return True


def words_disjoint(triggers: list, negatives: list, duration_s: float) -> bool:
    """No two words (triggers or negatives) overlap, and each lies inside the clip."""
    spans = sorted((float(w[0]), float(w[1])) for w in [*triggers, *negatives])
    if any(not 0.0 <= s < e <= duration_s for s, e in spans):
        return False
    return all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))


def held_out_isolated(subset: str, families: list[str], held_out: str) -> bool:
    """The held-out family speaks only in unseen_voice rows, and those hold nothing else."""
    if subset == "unseen_voice":
        return all(f == held_out or f in NO_VOICE for f in families)
    return held_out not in families


def manifest_row_checks(row, labels: np.ndarray, step_s: float, pulse_steps: int, held_out: str) -> dict:
    """The manifest-level booleans of one row (no audio needed)."""
    try:
        triggers, negatives = _spans(row.triggers), _spans(row.negatives)
        families = [str(f) for f in _spans(row.trigger_families)] + [row.voice_family]
    except (ValueError, TypeError):
        return {"labels_match": False, "words_disjoint": False, "held_out_isolated": False}
    if row.label_row < 0:  # negative_stream: no labels row, so no trigger may be there
        labels_ok = row.subset == "negative_stream" and not triggers
    elif row.label_row >= len(labels) or labels.shape[1] != round(row.duration_s / step_s):
        labels_ok = False
    else:
        labels_ok = label_pulses_match(labels[row.label_row], [float(t[1]) for t in triggers], step_s, pulse_steps)
    return {"labels_match": labels_ok, "words_disjoint": words_disjoint(triggers, negatives, row.duration_s),
            "held_out_isolated": held_out_isolated(row.subset, families, held_out)}


def generated_file_frame(data_dir: Path, manifest: pd.DataFrame, labels: np.ndarray, sample_rate: int,
                         step_s: float, pulse_steps: int, held_out: str, workers: int = 0) -> pd.DataFrame:
    """One row per manifest row: audio facts of its file plus the manifest-level checks."""
    manifest = manifest.assign(voice_family=manifest["voice_family"].fillna("").astype(str))
    paths = [data_dir / str(f) for f in manifest["file"]]
    present = [p for p in paths if p.is_file()]
    stats = dict(zip(present, many_audio_stats(present, workers)))
    # a missing file is judged by `exists` alone: its audio facts are null, so not judged
    no_audio = {"decodes": None, "sample_rate": _NAN, "n_samples": _NAN, "finite": None, "peak": _NAN, "rms": _NAN}
    rows = []
    for row, path in zip(manifest.itertuples(index=False), paths):
        audio = stats.get(path, no_audio)
        rows.append({
            "file": str(row.file), "subset": row.subset, "voice_family": row.voice_family,
            "exists": path in stats, **{k: audio[k] for k in no_audio},
            "expected_samples": float(round(row.duration_s * sample_rate)),
            "has_trigger": float(row.n_triggers > 0),
            **manifest_row_checks(row, labels, step_s, pulse_steps, held_out),
        })
    return pd.DataFrame(rows).astype({"decodes": object, "finite": object})


def family_frame(files: pd.DataFrame, families: list[str], held_out: str) -> pd.DataFrame:
    """Main clips per voice family (every configured training family, 0 when absent)."""
    main = files.loc[(files["subset"] == "main") & ~files["voice_family"].isin(NO_VOICE), "voice_family"]
    counts = main.value_counts()
    names = [f for f in families if f != held_out] + sorted(set(counts.index) - set(families))
    return pd.DataFrame({"family": names, "main_clips": [int(counts.get(f, 0)) for f in names]})


def balance_limits(counts: pd.Series, tolerance: float) -> tuple[float, float]:
    """[low, high] clip count per family: the mean, plus or minus `tolerance` of it."""
    mean = float(counts.mean()) if len(counts) else 0.0
    return mean * (1 - tolerance), mean * (1 + tolerance)
