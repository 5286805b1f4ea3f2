"""Stage `split`: stratified, leakage-free train/val/test lists (DESIGN §3, §4).

- Main clips: StratifiedGroupKFold on (trigger present, background kind), grouped by the
  clip's resource group, so a TTS render or a background recording (both belong to one
  group) never reaches two splits. Folds are then dealt to val, test and train.
- Negative stream: whole stream groups go to val or test (a stream segment and its renders
  stay together). The stream is for measuring false accepts, never for training.
- Unseen voice: every clip of the held-out family is test_unseen_voice.
Outputs: data/trigger_word/split/<split>.txt (one clip_id per line), split_report.json
(per split: clips, hours, positive share, groups, background mix) and the clip counts as
DVC metrics in reports/trigger_word/split.json.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from components import paths, tracking
from components.config import SplitParams
from components.stage_cli import StageError, stage_main, staged_output

PIPELINE = "trigger-word"
SPLITS = ("train", "val", "test", "test_unseen_voice", "negative_stream_val", "negative_stream_test")
MAX_FOLDS = 20  # finer folds track the requested shares more closely
# tiny configurations have strata rarer than the fold count; the split is still grouped
warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)


def fold_counts(shares: SplitParams, n_folds: int) -> dict[str, int]:
    """Folds per split, at least one each for val and test."""
    val = max(1, round(shares.val * n_folds))
    test = max(1, round(shares.test * n_folds))
    if val + test >= n_folds:
        raise StageError(f"split: {n_folds} folds cannot hold val {shares.val} and test {shares.test} and a train part; add groups")
    return {"val": val, "test": test, "train": n_folds - val - test}


def split_main(main: pd.DataFrame, shares: SplitParams, seed: int) -> pd.Series:
    """Split name per main clip (index aligned with `main`)."""
    n_groups = main["group"].nunique()
    n_folds = min(MAX_FOLDS, n_groups)
    if n_folds < 3:
        raise StageError(f"split: the main clips come from {n_groups} resource groups; at least 3 are needed")
    strata = (main["n_triggers"] > 0).map({True: "pos", False: "neg"}) + "|" + main["background"]
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(main), dtype=int)
    for k, (_, held) in enumerate(folds.split(main, strata, groups=main["group"])):
        fold_of[held] = k
    counts = fold_counts(shares, n_folds)
    names = ["val"] * counts["val"] + ["test"] * counts["test"] + ["train"] * counts["train"]
    return pd.Series([names[k] for k in fold_of], index=main.index)


def split_stream(stream: pd.DataFrame, val_share: float, seed: int) -> pd.Series:
    groups = np.random.default_rng(seed).permutation(sorted(stream["group"].unique()))
    if len(groups) == 1:
        raise StageError("split: the negative stream needs at least 2 groups (negative_stream.groups) for val and test")
    n_val = min(max(1, round(val_share * len(groups))), len(groups) - 1) if len(groups) else 0
    val_groups = set(groups[:n_val].tolist())
    return stream["group"].map(lambda g: "negative_stream_val" if g in val_groups else "negative_stream_test")


def run(manifest_path: Path, shares: SplitParams, seed: int, out_dir: Path, summary_path: Path | None = None) -> dict:
    if not manifest_path.is_file():
        raise StageError(f"{manifest_path}: not found; run the generate stage first")
    manifest = pd.read_csv(manifest_path)
    split = pd.Series("", index=manifest.index)
    main = manifest[manifest["subset"] == "main"]
    stream = manifest[manifest["subset"] == "negative_stream"]
    split[main.index] = split_main(main, shares, seed)
    split[stream.index] = split_stream(stream, shares.negative_stream_val, seed)
    split[manifest["subset"] == "unseen_voice"] = "test_unseen_voice"

    report: dict[str, dict] = {}
    with staged_output(out_dir) as tmp:
        for name in SPLITS:
            rows = manifest[split == name]
            (tmp / f"{name}.txt").write_text("".join(f"{c}\n" for c in rows["clip_id"]))
            report[name] = {
                "clips": len(rows),
                "hours": round(float(rows["duration_s"].sum()) / 3600, 3),
                "positive_share": round(float((rows["n_triggers"] > 0).mean()), 3) if len(rows) else 0.0,
                "groups": int(rows["group"].nunique()),
                "backgrounds": rows["background"].value_counts(normalize=True).round(3).sort_index().to_dict(),
            }
        (tmp / "split_report.json").write_text(json.dumps(report, indent=2) + "\n")
    tracking.log_artifacts([out_dir / "split_report.json"], "split")
    counts = {name: r["clips"] for name, r in report.items()}
    if summary_path is not None:  # the DVC metrics file
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = paths.pipeline_dir(PIPELINE)
    parser.add_argument("--manifest", type=Path, default=base / "generated" / "manifest.csv")
    parser.add_argument("--out", type=Path, default=base / "split")
    parser.add_argument("--summary", type=Path, default=paths.REPORTS_DIR / "trigger_word" / "split.json")
    return stage_main(parser, argv, lambda params, args: run(
        args.manifest, params.trigger_word.split, params.trigger_word.seed, args.out, args.summary))


if __name__ == "__main__":
    raise SystemExit(main())
