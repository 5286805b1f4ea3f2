"""The thin command-line edge every stage shares.

A stage module defines a pure `run(...)` and a `main()` that builds an argparse parser
(`stage_parser` for the shared stages, whose first argument names the pipeline) and hands
it here. This reads params.yaml, calls the stage and turns the errors a user can
cause (bad params, bad input files, failed checks) into one line on stderr and exit 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from components import paths, tasks
from components.config import Params, ParamsError, load_params
from components.errors import InputError


class StageError(Exception):
    """A stage could not do its job for a reason the user can fix; one-line message."""


def stage_parser(doc: str) -> argparse.ArgumentParser:
    """A shared stage's parser: `python -m components.<stage> <pipeline> ...`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("pipeline", choices=sorted(tasks.PIPELINES), help="which pipeline's data and model")
    return parser


def stage_main(parser: argparse.ArgumentParser, argv: list[str] | None,
               body: Callable[[Params, argparse.Namespace], dict]) -> int:
    parser.add_argument("--params", type=Path, default=paths.PARAMS_FILE, help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        result = body(load_params(args.params), args)
    except (ParamsError, StageError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a folder that is not a stage's output. Never: data/raw/ (the user's
    inputs), a folder inside it or holding it, or the project. A missing or empty folder has
    nothing to lose. A non-empty one must be where outputs go: in the project, under
    data/<pipeline>/, models/ or reports/; outside it, under the system temp dir (tests and
    benchmarks write there)."""
    target, project = out_dir.resolve(), (paths.find_project_root() or Path.cwd()).resolve()
    raw = project / paths.RAW_DIR
    if target == raw or raw in target.parents or target in raw.parents:
        raise StageError(f"{out_dir}: refusing to write a stage output there: it is, holds or is inside "
                         f"{paths.RAW_DIR}/, the user's inputs; pick another folder")
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    if project in target.parents:
        homes = [p for p in (project / "data").glob("*") if p.resolve() != raw]
        homes += [project / paths.MODELS_DIR, project / paths.REPORTS_DIR]
    else:
        homes = [Path(tempfile.gettempdir()).resolve()]
    if not target.is_dir() or not any(home in target.parents for home in homes):
        raise StageError(f"{out_dir}: refusing to replace it: it is not empty and not a stage output folder "
                         f"(under data/<pipeline>/, models/, reports/ or the temp dir); pick a new or empty folder")


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Write a stage's output folder under a temporary name and swap it in only when the
    stage succeeds, so an interrupted run never leaves a half-written output behind. Only a
    folder that `check_replaceable` accepts is ever replaced."""
    check_replaceable(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    check_replaceable(partial)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)


DETECTION_SETTINGS = ("threshold", "smoothing_steps", "refractory_s")  # saved in the model at evaluation


def add_detection_flags(parser: argparse.ArgumentParser) -> None:
    """--threshold, --smoothing-steps, --refractory-s: explicit overrides of the model's own settings."""
    parser.add_argument("--threshold", type=float, metavar="T", help="override the model's threshold")
    parser.add_argument("--smoothing-steps", type=int, metavar="N",
                        help="override the model's smoothing (steps of the moving average)")
    parser.add_argument("--refractory-s", type=float, metavar="S",
                        help="override the model's refractory period (seconds between detections)")


def detection_overrides(args: argparse.Namespace) -> dict:
    """The detection settings given as flags; every other one stays the model's own."""
    return {k: getattr(args, k) for k in DETECTION_SETTINGS if getattr(args, k, None) is not None}
