"""Stage `generate`: a pipeline's dataset, from its params and its raw inputs (DESIGN §4, §5).

  python -m components.generate trigger-word   -> data/trigger_word/generated/, reports/trigger_word/generate/
  python -m components.generate day-night      -> data/day_night/generated/, reports/day_night/generate/

What is generated is the pipeline's (its task's `generate`, e.g.
components/tasks/day_night/generate.py): a folder with manifest.csv (one row per item, the
split stage's input) and the data it lists, and a report folder with examples.png (a
contact sheet) and summary.json (the DVC metrics: facts of the data only). Raw inputs are
only read, never changed or deleted.
"""
from __future__ import annotations

from pathlib import Path

from components import paths, tasks
from components.stage_cli import stage_main, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, help="the raw inputs (default: the task's raw_dir)")
    parser.add_argument("--out", type=Path, help="default: data/<section>/generated")
    parser.add_argument("--report", type=Path, help="default: reports/<section>/generate")

    def body(params, args):
        task = tasks.load(args.pipeline)
        return task.generate(tasks.params_of(params, args.pipeline), args.raw or task.raw_dir,
                             args.out or paths.pipeline_dir(args.pipeline) / "generated",
                             args.report or paths.reports_dir(args.pipeline) / "generate")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
