"""The split: stratified, no leakage across splits, the held-out family kept apart."""
import json

import pandas as pd
import pytest

from components.config import load_params
from components.split import run
from components.tasks.trigger_word.data import SPLITS
from conftest import PROJECT_ROOT

P = load_params(PROJECT_ROOT / "params.yaml").trigger_word


@pytest.fixture(scope="module")
def split_dir(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "split"
    run("trigger-word", P, tiny_dataset, out_dir=out)
    return out


def _assignments(tiny_dataset, split_dir) -> pd.DataFrame:
    m = pd.read_csv(tiny_dataset / "manifest.csv")
    where = {cid: name for name in SPLITS for cid in (split_dir / f"{name}.txt").read_text().split()}
    m["split"] = m.clip_id.map(where)
    return m


def test_every_clip_in_exactly_one_split(tiny_dataset, split_dir):
    m = _assignments(tiny_dataset, split_dir)
    assert m.split.notna().all()
    listed = [c for name in SPLITS for c in (split_dir / f"{name}.txt").read_text().split()]
    assert len(listed) == len(set(listed)) == len(m)


def test_no_group_render_or_recording_in_two_splits(tiny_dataset, split_dir):
    m = _assignments(tiny_dataset, split_dir)
    assert (m.groupby("group").split.nunique() == 1).all()
    recorded = m[m.background_file.fillna("") != ""]
    assert (recorded.groupby("background_file").split.nunique() <= 1).all()


def test_held_out_family_only_in_unseen_split(tiny_dataset, split_dir):
    m = _assignments(tiny_dataset, split_dir)
    assert (m[m.subset == "unseen_voice"].split == "test_unseen_voice").all()
    assert (m[m.split == "test_unseen_voice"].subset == "unseen_voice").all()
    assert set(m[m.subset == "negative_stream"].split) == {"negative_stream_val", "negative_stream_test"}


def test_ratios_and_stratification(tmp_path):
    """On a large synthetic manifest: shares near 80/10/10 and positive share equal per split."""
    import numpy as np
    rng = np.random.default_rng(0)
    n = 4000
    m = pd.DataFrame({
        "clip_id": [f"main-{i:05d}" for i in range(n)], "subset": "main",
        "group": rng.integers(0, 100, n), "n_triggers": (rng.random(n) < 0.7) * rng.integers(1, 4, n),
        "background": rng.choice(["white", "pink", "babble", "hum"], n), "duration_s": 10.0,
    })
    m.to_csv(tmp_path / "manifest.csv", index=False)
    run("trigger-word", P, tmp_path, out_dir=tmp_path / "split")
    report = json.loads((tmp_path / "split" / "split_report.json").read_text())
    shares = {k: report[k]["clips"] / n for k in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.02) and shares["test"] == pytest.approx(0.1, abs=0.02)
    positive = [report[k]["positive_share"] for k in ("train", "val", "test")]
    assert max(positive) - min(positive) < 0.04
    for kind in ("white", "pink", "babble", "hum"):
        per_split = [report[k]["backgrounds"][kind] for k in ("train", "val", "test")]
        assert max(per_split) - min(per_split) < 0.05
