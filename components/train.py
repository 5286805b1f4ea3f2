"""Stage `train`: fit the trigger-word model on the train split (DESIGN §4 "Model").

Reads the hyperparameters from params.yaml (`features`, `model`, `train`), overlaid with
the tune stage's best configuration when one is given. Streams batches from the split's
WAV files (never all audio at once), prints a line per epoch, logs each epoch to the
pipeline's MLflow run, and keeps the best epoch's weights.
Outputs: models/trigger_word/model.pt, reports/trigger_word/train/{metrics.json,
history.csv, curves.png}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import torch

from components import paths, tracking
from components.audio.features import FeatureConfig
from components.audio.model import ModelConfig, TriggerWordModel, save_model
from components.audio.training import ClipDataset, TrainConfig, train
from components.config import TriggerWordParams
from components.stage_cli import StageError, stage_main, staged_output

PIPELINE = "trigger-word"


def read_split(split_dir: Path, name: str) -> list[str]:
    path = split_dir / f"{name}.txt"
    if not path.is_file():
        raise StageError(f"{path}: not found; run the split stage first")
    return path.read_text().split()


def train_config(p: TriggerWordParams, overrides: dict | None = None) -> TrainConfig:
    t = {**p.train.model_dump(), **(overrides or {})}
    threads = t.pop("threads") or len(os.sched_getaffinity(0))
    return TrainConfig(lr=t["lr"], batch_size=t["batch_size"], max_epochs=t["max_epochs"], patience=t["patience"],
                       pos_weight=t["pos_weight"], weight_decay=t["weight_decay"], lr_schedule=t["lr_schedule"],
                       max_minutes=t["max_minutes"], num_threads=threads, seed=p.seed)


def build_model(p: TriggerWordParams, model_overrides: dict | None = None) -> TriggerWordModel:
    torch.manual_seed(p.seed)  # the initial weights are part of the experiment
    model = TriggerWordModel(FeatureConfig(**p.features.model_dump()),
                             ModelConfig(**{**p.model.model_dump(), **(model_overrides or {})}))
    model.metadata = {"word": p.word, "slug": p.slug}
    return model


def plot_curves(history: list[dict], best_epoch: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2), layout="constrained")
    loss, f1 = fig.subplots(1, 2)
    epochs = range(1, len(history) + 1)
    loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss.plot(epochs, [h["val_loss"] for h in history], label="val")
    loss.axvline(best_epoch, color="grey", ls=":", label=f"best (epoch {best_epoch})")
    loss.set(xlabel="epoch", ylabel="per-step BCE", title="loss")
    loss.legend()
    for key in ("val_precision", "val_recall", "val_f1"):
        f1.plot(epochs, [h[key] for h in history], label=key.removeprefix("val_"))
    f1.set(xlabel="epoch", title="validation, frame level (threshold 0.5)", ylim=(0, 1))
    f1.legend()
    fig.savefig(path, dpi=90)


def run(p: TriggerWordParams, data_dir: Path, split_dir: Path, best_config: Path | None,
        model_out: Path, report_dir: Path) -> dict:
    tuned = json.loads(best_config.read_text()) if best_config and best_config.is_file() else {}
    model = build_model(p, tuned.get("model"))
    cfg = train_config(p, tuned.get("train"))
    train_ds = ClipDataset(data_dir, read_split(split_dir, "train"), samples_per_step=model.samples_per_step)
    val_ds = ClipDataset(data_dir, read_split(split_dir, "val"), samples_per_step=model.samples_per_step)
    print(f"training on {len(train_ds)} clips, validating on {len(val_ds)}; {model.size_bytes() / 1e6:.2f} MB fp32, "
          f"{cfg.num_threads} threads, cap {cfg.max_minutes} min", flush=True)

    def on_epoch(epoch: int, m: dict) -> None:
        print(f"epoch {epoch:2d}  train loss {m['train_loss']:.4f}  val loss {m['val_loss']:.4f}  "
              f"val F1 {m['val_f1']:.3f}  lr {m['lr']:.2g}  {m['epoch_s']:.0f} s", flush=True)
        tracking.log_metrics({f"train.{k}": v for k, v in m.items()}, step=epoch)

    result = train(model, train_ds, val_ds, cfg, on_epoch=on_epoch)
    best = result.history[result.best_epoch - 1]
    metrics = {"best_epoch": result.best_epoch, "epochs": len(result.history), "stop_reason": result.stop_reason,
               "val_loss": round(best["val_loss"], 5), "val_frame_f1": round(best["val_f1"], 4),
               "size_kb": round(model.size_bytes() / 1024, 1)}
    model_out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, model_out)
    with staged_output(report_dir) as out:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with open(out / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *result.history[0]])
            writer.writeheader()
            writer.writerows({"epoch": i, **h} for i, h in enumerate(result.history, 1))
        plot_curves(result.history, result.best_epoch, out / "curves.png")
    tracking.log_artifacts([report_dir / "curves.png", report_dir / "history.csv"], "train")
    return {**metrics, "seconds": round(result.seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = paths.pipeline_dir(PIPELINE)
    parser.add_argument("--data", type=Path, default=base / "generated")
    parser.add_argument("--split", type=Path, default=base / "split")
    parser.add_argument("--best-config", type=Path, default=base / "tune" / "best_config.json")
    parser.add_argument("--model-out", type=Path, default=paths.MODELS_DIR / "trigger_word" / "model.pt")
    parser.add_argument("--report", type=Path, default=paths.REPORTS_DIR / "trigger_word" / "train")
    return stage_main(parser, argv, lambda params, args: run(
        params.trigger_word, args.data, args.split, args.best_config, args.model_out, args.report))


if __name__ == "__main__":
    raise SystemExit(main())
