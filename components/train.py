"""Stage `train`: fit a pipeline's model on its train split (DESIGN §3).

The task (`fit`) builds the model from params.yaml (`model`, `train`), overlaid with the
tune stage's best configuration when there is one, and trains it for an epoch budget
(max_epochs, early stopping by patience), keeping the best epoch's weights: never a
wall-clock budget, so the same commit, params and thread count give the same model file
on any machine. `train.safety_minutes` only fails a run that is far too slow; it never
shortens one. This stage prints a line per epoch, logs each epoch to the pipeline's
MLflow run (timings included) and writes the model and the figures (timings left out, so a
re-run writes the same bytes).
Outputs: models/<pipeline>/model.pt, reports/<pipeline>/train/{metrics.json, history.csv, curves.png}.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from components import paths, tasks, tracking
from components.errors import SafetyStop
from components.stage_cli import StageError, stage_main, stage_parser, staged_output


# Per-epoch figures that measure the machine, not the model: logged to MLflow, kept out of
# history.csv, so that every output DVC hashes is the same on a re-run.
TIMINGS = ("epoch_s", "train_clips_per_s")


def plot_curves(history: list[dict], best_epoch: int, path: Path) -> None:
    """Loss per epoch beside every other validation figure in [0, 1] (F1, accuracy...)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2), layout="constrained")
    loss, scores = fig.subplots(1, 2)
    epochs = range(1, len(history) + 1)
    loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss.plot(epochs, [h["val_loss"] for h in history], label="val")
    loss.axvline(best_epoch, color="grey", ls=":", label=f"best (epoch {best_epoch})")
    loss.set(xlabel="epoch", ylabel="loss", title="loss")
    loss.legend()
    for key in (k for k in history[0] if k.startswith("val_") and k != "val_loss"):
        scores.plot(epochs, [h[key] for h in history], label=key.removeprefix("val_"))
    scores.set(xlabel="epoch", title="validation", ylim=(0, 1))
    scores.legend()
    fig.savefig(path, dpi=90)


def run(pipeline: str, p, data_dir: Path, split_dir: Path, best_config: Path | None,
        model_out: Path, report_dir: Path) -> dict:
    task = tasks.load(pipeline)
    tuned = json.loads(best_config.read_text()) if best_config and best_config.is_file() else {}

    def on_epoch(epoch: int, m: dict) -> None:
        print(f"epoch {epoch:2d}  train loss {m['train_loss']:.4f}  val loss {m['val_loss']:.4f}  "
              f"{task.score} {m[task.score]:.4f}  lr {m['lr']:.2g}  {m['epoch_s']:.1f} s", flush=True)
        tracking.log_metrics({f"train.{k}": v for k, v in m.items()}, step=epoch)

    try:
        model, result = task.fit(p, data_dir, split_dir, tuned, on_epoch)
    except SafetyStop as exc:
        raise StageError(f"{tasks.section(pipeline)}.train.safety_minutes: {exc}") from None
    metrics = {"best_epoch": result.best_epoch, "epochs": len(result.history), "stop_reason": result.stop_reason,
               "threads": result.threads,  # the model is reproducible for this thread count
               **task.train_summary(model, result.history[result.best_epoch - 1])}
    model_out.parent.mkdir(parents=True, exist_ok=True)
    task.save_model(model, model_out)
    with staged_output(report_dir) as out:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with open(out / "history.csv", "w", newline="") as f:  # timings only in MLflow: they vary by machine
            writer = csv.DictWriter(f, fieldnames=["epoch", *(k for k in result.history[0] if k not in TIMINGS)],
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows({"epoch": i, **h} for i, h in enumerate(result.history, 1))
        plot_curves(result.history, result.best_epoch, out / "curves.png")
    tracking.log_artifacts([report_dir / "curves.png", report_dir / "history.csv"], "train")
    return {**metrics, "seconds": round(result.seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, help="default: data/<pipeline>/generated")
    parser.add_argument("--split", type=Path, help="default: data/<pipeline>/split")
    parser.add_argument("--best-config", type=Path, help="default: data/<pipeline>/tune/best_config.json")
    parser.add_argument("--model-out", type=Path, help="default: models/<pipeline>/model.pt")
    parser.add_argument("--report", type=Path, help="default: reports/<pipeline>/train")

    def body(params, args):
        base = paths.pipeline_dir(args.pipeline)
        return run(args.pipeline, tasks.params_of(params, args.pipeline), args.data or base / "generated",
                   args.split or base / "split", args.best_config or base / "tune" / "best_config.json",
                   args.model_out or paths.models_dir(args.pipeline) / "model.pt",
                   args.report or paths.reports_dir(args.pipeline) / "train")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
