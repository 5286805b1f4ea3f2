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
