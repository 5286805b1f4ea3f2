"""Stage `evaluate`: the trained model's figures on held-out data (DESIGN §4, §5).

What is measured is the pipeline's (its task's `evaluate`): the trigger word picks its
operating threshold on validation and reports FRR, FA/h and DET curves; the day/night
classifier calibrates its probabilities on validation and reports accuracy, ROC AUC and
calibration. The task writes the evaluated model (the trained one with what evaluation
fixed: threshold, temperature) and its figures; this stage writes metrics.json and logs
the headline figures and every report file to the pipeline's MLflow run.
Outputs: models/<pipeline>/<task.evaluated_file>, reports/<pipeline>/evaluate/.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from components import paths, tasks, tracking
from components.stage_cli import stage_main, stage_parser, staged_output


def run(pipeline: str, p, data_dir: Path, split_dir: Path, model_path: Path, evaluated_out: Path,
        report_dir: Path) -> dict:
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    task = tasks.load(pipeline)
    evaluated_out.parent.mkdir(parents=True, exist_ok=True)
    with staged_output(report_dir) as out:
        headline, metrics = task.evaluate(p, data_dir, split_dir, model_path, evaluated_out, out)
        (out / "metrics.json").write_text(json.dumps({**headline, **metrics}, indent=2) + "\n")
    tracking.log_metrics({k: v for k, v in headline.items() if isinstance(v, (int, float))})
    tracking.log_artifacts(sorted(report_dir.iterdir()), "evaluate")
    return headline


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, help="default: data/<pipeline>/generated")
    parser.add_argument("--split", type=Path, help="default: data/<pipeline>/split")
    parser.add_argument("--model", type=Path, help="default: models/<pipeline>/model.pt")
    parser.add_argument("--out", type=Path, help="the evaluated model (default: models/<pipeline>/<task's file>)")
    parser.add_argument("--report", type=Path, help="default: reports/<pipeline>/evaluate")

    def body(params, args):
        base, models = paths.pipeline_dir(args.pipeline), paths.models_dir(args.pipeline)
        return run(args.pipeline, tasks.params_of(params, args.pipeline), args.data or base / "generated",
                   args.split or base / "split", args.model or models / "model.pt",
                   args.out or models / tasks.load(args.pipeline).evaluated_file,
                   args.report or paths.reports_dir(args.pipeline) / "evaluate")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
