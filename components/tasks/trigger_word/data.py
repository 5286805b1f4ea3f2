"""Trigger word, data side: the checks of the validate stage and the split rule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components import paths
from components.audio import data_checks
from components.config import TriggerWordParams
from components.stage_cli import StageError
from components.validate import Check, Table, all_true

# ------------------------------------------------------------------------------ validate

RAW_DIR = paths.RAW_BACKGROUNDS_DIR
# A recording may be loud but should not sit at full scale: 0.1% of samples at |x| >= 0.999
MAX_CLIPPED_SHARE = 0.001
MANIFEST_COLUMNS = {"subset", "voice_family", "duration_s", "n_triggers", "triggers", "trigger_families",
                    "negatives", "file", "label_row"}


def raw_tables(p: TriggerWordParams, raw_dir: Path, workers: int = 0) -> list[Table]:
    """Every background recording decodes whole, at an accepted rate, neither silent nor
    clipped. An absent or empty folder passes."""
    v = p.validation
    return [Table("files", data_checks.raw_file_frame(raw_dir, workers), "file", [
        all_true("is_audio", "audio_file"), all_true("decodes", "decodes"),
        all_true("complete", "not_truncated"), all_true("finite", "finite"),
        Check("sample_rate_accepted", "ExpectColumnValuesToBeInSet",
              {"column": "sample_rate", "value_set": [float(r) for r in v.raw_sample_rates]}),
        Check("not_silent", "ExpectColumnValuesToBeBetween", {"column": "rms", "min_value": v.min_rms}),
        Check("not_clipped", "ExpectColumnValuesToBeBetween",
              {"column": "clipped_share", "max_value": MAX_CLIPPED_SHARE})])]


def generated_tables(p: TriggerWordParams, data_dir: Path, workers: int = 0) -> list[Table]:
    """Audio facts of every file, label alignment, word overlap, voice-family split and
    class/family balance of the generated dataset."""
    manifest, labels = _load_generated(data_dir)
    files = data_checks.generated_file_frame(data_dir, manifest, labels, p.audio.sample_rate, p.labels.step_ms / 1000,
                                             p.labels.pulse_steps, p.speech.held_out_family, workers)
    families = data_checks.family_frame(files, p.speech.families, p.speech.held_out_family)
    v = p.validation
    low, high = data_checks.balance_limits(families["main_clips"], v.family_balance_tolerance)
    return [
        Table("files", files, "file", [
            all_true("exists", "file_exists"), all_true("decodes", "decodes"),
            Check("sample_rate", "ExpectColumnValuesToBeInSet",
                  {"column": "sample_rate", "value_set": [float(p.audio.sample_rate)]}),
            Check("duration_exact", "ExpectColumnPairValuesToBeEqual", {
                "column_A": "n_samples", "column_B": "expected_samples", "ignore_row_if": "either_value_is_missing"}),
            all_true("finite", "finite"),
            Check("peak", "ExpectColumnValuesToBeBetween", {"column": "peak", "min_value": 0.0, "max_value": v.max_peak}),
            Check("rms", "ExpectColumnValuesToBeBetween", {"column": "rms", "min_value": v.min_rms, "max_value": v.max_rms}),
            Check("subset_known", "ExpectColumnValuesToBeInSet",
                  {"column": "subset", "value_set": list(data_checks.SUBSETS)}),
            all_true("labels_match", "labels_at_trigger_ends"), all_true("words_disjoint", "words_do_not_overlap"),
            all_true("held_out_isolated", "held_out_family_isolated"),
            Check("positive_share", "ExpectColumnMeanToBeBetween", {
                "column": "has_trigger", "min_value": v.min_positive_share, "max_value": v.max_positive_share},
                where=("subset", "main"))]),
        Table("families", families, "family", [
            Check("family_balance", "ExpectColumnValuesToBeBetween",
                  {"column": "main_clips", "min_value": low, "max_value": high})]),
    ]


def _load_generated(data_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        manifest = pd.read_csv(data_dir / "manifest.csv")
        labels = np.load(data_dir / "labels.npy")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the generated dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    missing = MANIFEST_COLUMNS - set(manifest.columns)
    if missing or labels.ndim != 2:
        raise StageError(f"{data_dir}: manifest.csv lacks columns {sorted(missing)}" if missing
                         else f"{data_dir}/labels.npy: expected [clips, steps], got shape {labels.shape}")
    return manifest, labels


# --------------------------------------------------------------------------------- split

ID_COLUMN = "clip_id"
SPLITS = ("train", "val", "test", "test_unseen_voice", "negative_stream_val", "negative_stream_test")


def assign_splits(manifest: pd.DataFrame, p: TriggerWordParams) -> pd.Series:
    """- Main clips: stratified on (trigger present, background kind), grouped by resource
      group, so a TTS render or a background recording never reaches two splits.
    - Negative stream: whole stream groups go to val or test (a segment and its renders stay
      together). The stream is for measuring false accepts, never for training.
    - Unseen voice: every clip of the held-out family is test_unseen_voice."""
    from components.split import deal_folds

    split = pd.Series("", index=manifest.index)
    main = manifest[manifest["subset"] == "main"]
    strata = (main["n_triggers"] > 0).map({True: "pos", False: "neg"}) + "|" + main["background"]
    shares = {"train": p.split.train, "val": p.split.val, "test": p.split.test}
    split[main.index] = deal_folds(strata, main["group"], shares, p.seed)
    stream = manifest[manifest["subset"] == "negative_stream"]
    split[stream.index] = _split_stream(stream, p.split.negative_stream_val, p.seed)
    split[manifest["subset"] == "unseen_voice"] = "test_unseen_voice"
    return split


def _split_stream(stream: pd.DataFrame, val_share: float, seed: int) -> pd.Series:
    groups = np.random.default_rng(seed).permutation(sorted(stream["group"].unique()))
    if len(groups) == 1:
        raise StageError("split: the negative stream needs at least 2 groups (negative_stream.groups) for val and test")
    n_val = min(max(1, round(val_share * len(groups))), len(groups) - 1) if len(groups) else 0
    val_groups = set(groups[:n_val].tolist())
    return stream["group"].map(lambda g: "negative_stream_val" if g in val_groups else "negative_stream_test")


def describe_split(rows: pd.DataFrame) -> dict:
    return {"clips": len(rows), "hours": round(float(rows["duration_s"].sum()) / 3600, 3),
            "positive_share": round(float((rows["n_triggers"] > 0).mean()), 3) if len(rows) else 0.0,
            "groups": int(rows["group"].nunique()),
            "backgrounds": rows["background"].value_counts(normalize=True).round(3).sort_index().to_dict()}


# ---------------------------------------------------------------------------------- gate

GATE_FOLDERS = {"gate_positive": "clips", "gate_negative": "negatives"}
# The gate's random streams: the generator draws its renders from (seed, 99) and its clips
# from (seed, 0|1|2, i), so with these codes no gate draw repeats a training one, whatever
# the two seeds are.
GATE_RENDER_STREAM, GATE_POSITIVE_STREAM, GATE_NEGATIVE_STREAM = 98, 3, 4


def gate_render_plan(p: TriggerWordParams) -> list:
    """The gate set's TTS renders (speech_bank.RenderJob), all in resource group 0."""
    import dataclasses

    from components.audio.speech_bank import plan_renders

    jobs, _ = plan_renders(p.word, p.speech, 1, 1, np.random.default_rng([p.gate.seed, GATE_RENDER_STREAM]))
    return [dataclasses.replace(job, group=0) for job in jobs]


def make_gate_data(p: TriggerWordParams, out_dir: Path, cache_dir: Path = paths.TTS_CACHE_DIR) -> dict:
    """The trigger word's gate set, from gate.seed and the generator's own machinery:
    - fresh TTS renders (voices drawn from the gate's stream) of the phrase and the negative
      words, over every voice family, the held-out one included: users are not the training
      voices. One resource group: the set is never split, so a clip may use any render;
    - gate.positive_clips clips of audio.clip_seconds with 1..clips.max_triggers trigger words
      and 0..clips.max_negatives negatives each;
    - gate.negative_hours of negative-only segments (negative_stream.segment_seconds long, at
      negative_stream.words_per_minute), the cheap bulk that resolves false accepts per hour.
    Synthetic backgrounds only: recordings in data/raw/ are training material. Writes
    clips/, negatives/ and manifest.csv (the generated manifest's columns) into out_dir."""
    import math

    from components.audio.clips import ClipSpec
    from components.audio.speech_bank import GroupLayout, SpeechBank, render_all
    from components.tasks.trigger_word.generate import make_clips, worker_count

    g, jobs = p.gate, gate_render_plan(p)
    bank = SpeechBank(jobs, render_all(jobs, cache_dir, worker_count(p)), GroupLayout(main=1, stream=0))
    specs = []
    for i in range(g.positive_clips):
        rng = np.random.default_rng([g.seed, GATE_POSITIVE_STREAM, i])
        n_triggers = int(rng.integers(1, p.clips.max_triggers + 1))
        specs.append(ClipSpec(f"gate-{i:05d}", "gate_positive", 0, p.audio.clip_seconds, n_triggers,
                              int(rng.integers(0, p.clips.max_negatives + 1)), (g.seed, GATE_POSITIVE_STREAM, i, 1)))
    segment_s = p.negative_stream.segment_seconds
    for j in range(math.ceil(g.negative_hours * 3600 / segment_s)):
        rng = np.random.default_rng([g.seed, GATE_NEGATIVE_STREAM, j])
        n_words = int(rng.poisson(p.negative_stream.words_per_minute * segment_s / 60))
        specs.append(ClipSpec(f"gate-negative-{j:04d}", "gate_negative", 0, segment_s, 0, n_words,
                              (g.seed, GATE_NEGATIVE_STREAM, j, 1)))
    manifest = pd.DataFrame([row for row, _ in make_clips(specs, bank, {}, p, out_dir, GATE_FOLDERS)])
    manifest["label_row"] = -1  # no label track: the gate scores events, not frames
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    positive = manifest["subset"] == "gate_positive"
    return {"positive_clips": int(positive.sum()), "trigger_occurrences": int(manifest["n_triggers"].sum()),
            "negative_hours": round(float(manifest.loc[~positive, "duration_s"].sum()) / 3600, 3),
            "hours": round(float(manifest["duration_s"].sum()) / 3600, 3), "renders": len(jobs)}
