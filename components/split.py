"""Stage `split`: stratified, leakage-free lists of a pipeline's items per split (DESIGN §3).

The rule is the pipeline's (its task's `assign_splits`); the tool they share is
`deal_folds`: StratifiedGroupKFold on the task's strata, grouped so that items that must
stay together (a TTS render, a recording, duplicate images) never reach two splits, with
the folds then dealt to the splits by their shares.
Outputs: data/<pipeline>/split/<split>.txt (one id per line), split_report.json (the
task's figures per split) and the item counts as DVC metrics in reports/<pipeline>/split.json.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from components import paths, tasks, tracking
from components.stage_cli import StageError, stage_main, stage_parser, staged_output

MAX_FOLDS = 20  # finer folds track the requested shares more closely
# tiny configurations have strata rarer than the fold count; the split is still grouped
warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)


def fold_counts(shares: dict[str, float], n_folds: int) -> dict[str, int]:
    """Folds per split: at least one for each split but train, which gets the rest."""
    counts = {name: max(1, round(share * n_folds)) for name, share in shares.items() if name != "train"}
    if sum(counts.values()) >= n_folds:
        wanted = ", ".join(f"{name} {share}" for name, share in shares.items() if name != "train")
        raise StageError(f"split: {n_folds} folds cannot hold {wanted} and a train part; add groups")
    return {**counts, "train": n_folds - sum(counts.values())}


def deal_folds(strata: pd.Series, groups: pd.Series, shares: dict[str, float], seed: int) -> pd.Series:
    """Split name per row (index aligned with `strata`): stratified by `strata`, grouped by `groups`."""
    n_groups = groups.nunique()
    n_folds = min(MAX_FOLDS, n_groups)
    if n_folds < 3:
        raise StageError(f"split: the items come from {n_groups} groups; at least 3 are needed")
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(strata), dtype=int)
    for k, (_, held) in enumerate(folds.split(np.zeros(len(strata)), strata, groups=groups)):
        fold_of[held] = k
    names = [name for name, count in fold_counts(shares, n_folds).items() for _ in range(count)]
    return pd.Series([names[k] for k in fold_of], index=strata.index)


def run(pipeline: str, p, data_dir: Path, out_dir: Path, summary_path: Path | None = None) -> dict:
    task = tasks.load(pipeline)
    manifest_path = data_dir / "manifest.csv"
    if not manifest_path.is_file():
        raise StageError(f"{manifest_path}: not found; run the generate stage first")
    manifest = pd.read_csv(manifest_path)
    split = task.assign_splits(manifest, p)
    report: dict[str, dict] = {}
    with staged_output(out_dir) as tmp:
        for name in task.splits:
            rows = manifest[split == name]
            (tmp / f"{name}.txt").write_text("".join(f"{i}\n" for i in rows[task.id_column]))
            report[name] = task.describe_split(rows)
        (tmp / "split_report.json").write_text(json.dumps(report, indent=2) + "\n")
    tracking.log_artifacts([out_dir / "split_report.json"], "split")
    counts = {name: int((split == name).sum()) for name in task.splits}
    if summary_path is not None:  # the DVC metrics file
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def read_split(split_dir: Path, name: str) -> list[str]:
    """The ids of one split, as the split stage wrote them."""
    path = split_dir / f"{name}.txt"
    if not path.is_file():
        raise StageError(f"{path}: not found; run the split stage first")
    return path.read_text().split()


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, help="the generated dataset (default: data/<pipeline>/generated)")
    parser.add_argument("--out", type=Path, help="default: data/<pipeline>/split")
    parser.add_argument("--summary", type=Path, help="default: reports/<pipeline>/split.json")

    def body(params, args):
        base = paths.pipeline_dir(args.pipeline)
        return run(args.pipeline, tasks.params_of(params, args.pipeline), args.data or base / "generated",
                   args.out or base / "split", args.summary or paths.reports_dir(args.pipeline) / "split.json")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
