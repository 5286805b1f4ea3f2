"""Stage `features`: a pipeline's fixed features of its generated data, computed once and cached by DVC.

  python -m components.features trigger-word   -> data/trigger_word/features/

The trigger-word pipeline writes the frozen speech embedding of every generated file there when
`features.frontend` is speech_embedding (components/tasks/trigger_word/features.py), a note
otherwise; its tune and train stages read the cache.
"""
from __future__ import annotations

from pathlib import Path

from components import paths, tasks
from components.stage_cli import stage_main, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, help="default: data/<section>/generated")
    parser.add_argument("--out", type=Path, help="default: data/<section>/features")

    def body(params, args):
        task = tasks.load(args.pipeline)
        return task.features(tasks.params_of(params, args.pipeline),
                             args.data or paths.pipeline_dir(args.pipeline) / "generated",
                             args.out or paths.pipeline_dir(args.pipeline) / "features")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
