"""The trigger-word dataset, synthesized for the generate stage (components/generate.py, DESIGN §4).

Outputs, under data/trigger_word/generated/:
  clips/<id>.wav            10 s clips (main and unseen-voice subsets), 16-bit 16 kHz mono
  negative_stream/<id>.wav  segments of the negative-only stream
  manifest.csv              one row per file: subset, group, family, background, SNR, word times
  labels.npy                uint8 [clips, steps] extended-pulse labels; manifest.label_row indexes it
and reports/trigger_word/generate/ (examples.png, summary.json).
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from components import tracking
from components.audio import audio_io
from components.audio.clips import ClipSpec, assemble_clip
from components.audio.figures import plot_clip_examples
from components.audio.speech_bank import GroupLayout, RenderJob, SpeechBank, plan_renders, render_all
from components.config import TriggerWordParams
from components.stage_cli import staged_output

SUBSET_DIRS = {"main": "clips", "unseen_voice": "clips", "negative_stream": "negative_stream"}


def render_plan(p: TriggerWordParams) -> tuple[list[RenderJob], GroupLayout]:
    """Every TTS render of the dataset and its resource group (drawn from the seed's stream 99)."""
    return plan_renders(p.word, p.speech, p.generate.groups, p.negative_stream.groups,
                        np.random.default_rng([p.seed, 99]))


def plan_clips(p: TriggerWordParams, bank: SpeechBank) -> list[ClipSpec]:
    """Every clip and stream segment to make, each with its own seed (so order-free)."""
    layout, specs = bank.layout, []
    positive_groups = bank.groups_with_triggers("main")
    for subset, count in (("main", p.clips.main), ("unseen_voice", p.clips.unseen_voice)):
        code = 0 if subset == "main" else 1
        for i in range(count):
            rng = np.random.default_rng([p.seed, code, i])
            n_trig = 0 if rng.random() < p.clips.p_no_trigger else int(rng.integers(1, p.clips.max_triggers + 1))
            if subset == "unseen_voice":
                group = layout.unseen
            else:
                pool = positive_groups if n_trig else range(layout.main)
                group = int(pool[int(rng.integers(len(pool)))])
            n_neg = int(rng.integers(0, p.clips.max_negatives + 1))
            specs.append(ClipSpec(f"{subset}-{i:05d}", subset, group, p.audio.clip_seconds, n_trig, n_neg, (p.seed, code, i, 1)))
    segment_s = p.negative_stream.segment_seconds
    for j in range(math.ceil(p.negative_stream.minutes * 60 / segment_s)):
        rng = np.random.default_rng([p.seed, 2, j])
        n_words = int(rng.poisson(p.negative_stream.words_per_minute * segment_s / 60))
        group = layout.main + j % layout.stream  # round robin: every stream group gets equal audio
        specs.append(ClipSpec(f"stream-{j:04d}", "negative_stream", group, segment_s, 0, n_words, (p.seed, 2, j, 1)))
    return specs


def load_recordings(raw_backgrounds: Path, sample_rate: int, n_groups: int) -> dict[int, list[tuple[str, np.ndarray]]]:
    """Background recordings by resource group (stable: a file's group depends on its name)."""
    by_group: dict[int, list[tuple[str, np.ndarray]]] = {}
    if not raw_backgrounds.is_dir():
        return by_group
    for path in audio_io.find_audio_files(raw_backgrounds):
        name = str(path.relative_to(raw_backgrounds))
        group = int(hashlib.sha1(name.encode()).hexdigest(), 16) % n_groups
        by_group.setdefault(group, []).append((name, audio_io.read_audio(path, sample_rate)))
    return by_group


# worker state, inherited through fork so the bank is not pickled per clip
_STATE: dict = {}


def _init_worker() -> None:
    # one BLAS thread per worker: the workers already fill the cores, and oversubscribed
    # BLAS threads stall each other (seen as 10x slower babble mixing)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _make_clip(spec: ClipSpec) -> tuple[dict, np.ndarray]:
    bank, recordings, p, out_dir = _STATE["bank"], _STATE["recordings"], _STATE["params"], _STATE["out_dir"]
    audio, row, labels = assemble_clip(spec, bank, recordings, p)
    rel = Path(_STATE["folders"][spec.subset]) / f"{spec.clip_id}.wav"
    audio_io.write_wav(out_dir / rel, audio, p.audio.sample_rate)
    row["file"] = str(rel)
    return row, labels


def worker_count(p: TriggerWordParams) -> int:
    return p.generate.workers or len(os.sched_getaffinity(0))


def make_clips(specs: list[ClipSpec], bank: SpeechBank, recordings: dict, p: TriggerWordParams, out_dir: Path,
               folders: dict[str, str]) -> list[tuple[dict, np.ndarray]]:
    """Assemble every clip on forked workers (they inherit the bank, nothing is pickled) and
    write each to <out_dir>/<folders[its subset]>/<clip_id>.wav; (manifest row, labels) per
    spec, in order. Also the gate set's maker (components/tasks/trigger_word/data.py)."""
    _STATE.update(bank=bank, recordings=recordings, params=p, out_dir=out_dir, folders=folders)
    with mp.get_context("fork").Pool(worker_count(p), initializer=_init_worker) as pool:
        return list(tqdm(pool.imap(_make_clip, specs, chunksize=4), total=len(specs), desc="clips", unit="clip"))


def run(p: TriggerWordParams, raw_backgrounds: Path, out_dir: Path, report_dir: Path, cache_dir: Path) -> dict:
    """Render speech (cached), assemble every clip, write the manifest, labels and report."""
    with staged_output(out_dir) as tmp_out, staged_output(report_dir) as tmp_report:
        figures = _generate(p, raw_backgrounds, tmp_out, tmp_report, cache_dir)
    tracking.log_artifacts([report_dir / "examples.png", report_dir / "summary.json"], "generate")
    tracking.log_metrics({f"generate.{k}": v for k, v in figures.items()})
    return figures


def _generate(p: TriggerWordParams, raw_backgrounds: Path, out_dir: Path, report_dir: Path, cache_dir: Path) -> dict:
    started = time.perf_counter()
    jobs, layout = render_plan(p)
    audio = render_all(jobs, cache_dir, worker_count(p))
    bank = SpeechBank(jobs, audio, layout)
    tts_s = time.perf_counter() - started

    specs = plan_clips(p, bank)
    results = make_clips(specs, bank, load_recordings(raw_backgrounds, p.audio.sample_rate, layout.unseen), p,
                         out_dir, SUBSET_DIRS)

    rows, labels = [], []
    for row, lab in results:
        row["label_row"] = len(labels) if row["subset"] != "negative_stream" else -1
        if row["subset"] != "negative_stream":
            labels.append(lab)
        rows.append(row)
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    np.save(out_dir / "labels.npy", np.stack(labels))

    examples = [(audio_io.read_audio(out_dir / r["file"]), r, labels[r["label_row"]])
                for r in rows if r["subset"] == "main" and r["n_triggers"]][:4]
    plot_clip_examples(examples, p.audio.sample_rate, p.labels.step_ms / 1000, report_dir / "examples.png")
    elapsed = time.perf_counter() - started
    audio_hours = float(manifest["duration_s"].sum()) / 3600
    summary = {  # the DVC metrics file: facts of the data only, so a re-run leaves it unchanged
        "clips": int((manifest["subset"] != "negative_stream").sum()),
        "stream_segments": int((manifest["subset"] == "negative_stream").sum()),
        "audio_hours": round(audio_hours, 3),
        "renders": len(jobs),
        "positive_share": round(float((manifest.loc[manifest.subset == "main", "n_triggers"] > 0).mean()), 3),
    }
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "tts_seconds": round(tts_s, 1), "seconds": round(elapsed, 1),
            "clips_per_second": round(len(specs) / max(elapsed - tts_s, 1e-9), 1)}

