"""The notes' baseline on the day-night data: a 12,288-32-1 ReLU MLP, trained by torch and
by the from-scratch NumPy network, with test accuracy, ECE and seconds of each; and the floor
under both, mean brightness against a threshold fitted on train (components/vision/brightness.py).

Reads the generated dataset and split of `cs230 run day-night` (data/day_night/) when there
is one; on a fresh clone it renders --images scenes (default 2,000) and splits them in a
scratch folder with the same stages (components/tasks/day_night/generate.py, components/split.py).
The baseline's params are params.yaml's `day_night.model` and `day_night.train` (the notes'
defaults), whatever the search chose for the registered model, capped at --epochs.
    python benchmarks/day_night_baseline.py [--backends torch numpy] [--images 2000] [--epochs 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components import paths, split  # noqa: E402
from components.tasks.day_night import generate as generate_scenes  # noqa: E402
from components.config import load_params  # noqa: E402
from components.split import read_split  # noqa: E402
from components.tasks.day_night import fitting as task  # noqa: E402
from components.tasks.day_night.data import split_arrays  # noqa: E402
from components.vision import brightness  # noqa: E402
from components.vision.evaluation import classification_metrics  # noqa: E402
from components.vision.training import fit  # noqa: E402


def scratch_dataset(p, images: int, work: Path) -> tuple[Path, Path]:
    """A small day-night dataset and split, made by the pipeline's own stages."""
    p = p.model_copy(update={"generate": p.generate.model_copy(update={"images": images, "source": "synthetic"})})
    generate_scenes.run(p, ROOT / paths.RAW_DAY_NIGHT_DIR, work / "generated", work / "report")
    split.run("day-night", p, work / "generated", work / "split")
    return work / "generated", work / "split"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "numpy"], choices=["torch", "numpy"])
    parser.add_argument("--images", type=int, default=2000, help="scenes to render when there is no pipeline data")
    parser.add_argument("--epochs", type=int, default=10, help="at most this many epochs per backend")
    args = parser.parse_args()
    p = load_params(ROOT / "params.yaml").day_night
    p = p.model_copy(update={"train": p.train.model_copy(update={"max_epochs": min(args.epochs, p.train.max_epochs)})})
    with tempfile.TemporaryDirectory(prefix="day-night-bench-") as work:
        data, splits = ROOT / "data/day_night/generated", ROOT / "data/day_night/split"
        if (splits / "test.txt").is_file():
            source = "the pipeline's dataset"
        else:
            data, splits = scratch_dataset(p, args.images, Path(work))
            source = f"{args.images} scenes rendered for this benchmark (no `cs230 run day-night` data)"
        arrays = {name: split_arrays(data, read_split(splits, name)) for name in ("train", "val", "test")}
    baseline = {"kind": "mlp", "depth": 1, "width": 32, "activation": "relu", "init": "he", "dropout": 0.0}
    print(f"baseline 12288-32-1 relu MLP on {source}; train {len(arrays['train'][0])}, val {len(arrays['val'][0])}, "
          f"test {len(arrays['test'][0])} images")
    threshold = brightness.fit_threshold(*arrays["train"])
    m = classification_metrics(arrays["test"][1], brightness.p_night(arrays["test"][0], threshold))
    print(f"bright test accuracy {m['accuracy']:.4f}  ROC AUC {m['roc_auc']:.4f}  (mean brightness below "
          f"{threshold:.1f} is night, fitted on train)", flush=True)
    for backend in args.backends:
        model = task.build(p, baseline)
        started = time.perf_counter()
        result = fit(model, *arrays["train"], *arrays["val"], task.train_config(p), seed=p.seed, backend=backend)
        seconds = time.perf_counter() - started
        m = classification_metrics(arrays["test"][1], model.predict_proba(arrays["test"][0]))
        print(f"{backend:6s} test accuracy {m['accuracy']:.4f}  ROC AUC {m['roc_auc']:.4f}  ECE {m['ece']:.4f} "
              f"(uncalibrated)  {len(result.history)} epochs (best {result.best_epoch}, {result.stop_reason})  "
              f"{seconds:.1f} s", flush=True)

if __name__ == "__main__":
    main()
