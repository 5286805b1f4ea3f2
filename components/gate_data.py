"""Stage `gate_data`: the fixed set a pipeline's promotion gate judges every model on (DESIGN §3).

The register stage compares a challenger with the champion on this set, both scored now,
so they meet the same data. It is made from the pipeline's `gate` section alone (its seed
and sizes) plus the settings that shape the data (the word, voices, renderer), never from
the pipeline's training `seed` or clip counts: a run with another training seed, or more
training data, is judged on the same set. Nothing trains on it or picks a threshold on it.

The task's `make_gate_data(p, out_dir)` writes the set; this stage adds gate.json, the
task's figures of the set and `gate_hash`, a content hash of every file in it, which the
register stage stores on each version so a figure always names the data that measured it.
Outputs: data/<section>/gate/ (the task's files and gate.json) and gate.json's figures as
DVC metrics in reports/<section>/gate_data.json.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from components import paths, tasks
from components.stage_cli import StageError, stage_main, stage_parser, staged_output

GATE_INFO = "gate.json"


def content_hash(folder: Path) -> str:
    """sha256 over every file under `folder` but gate.json: its relative path, size and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != GATE_INFO):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run(pipeline: str, p, out_dir: Path, summary_path: Path | None = None) -> dict:
    started = time.perf_counter()
    with staged_output(out_dir) as tmp:
        figures = tasks.load(pipeline).make_gate_data(p, tmp)
        info = {**figures, "seed": p.gate.seed, "gate_hash": content_hash(tmp)}
        (tmp / GATE_INFO).write_text(json.dumps(info, indent=2) + "\n")
    if summary_path is not None:  # the DVC metrics file (the summary table shows it)
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "seconds": round(time.perf_counter() - started, 1)}


def read_gate_info(gate_dir: Path) -> dict:
    """gate.json of a gate set: the figures the task wrote and `gate_hash`."""
    path = Path(gate_dir) / GATE_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot read the gate set ({str(exc).splitlines()[0]}); "
                         "run the pipeline's gate_data stage first") from None
    if "gate_hash" not in info:
        raise StageError(f"{path}: no gate_hash; run the pipeline's gate_data stage again")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, help="default: data/<section>/gate")
    parser.add_argument("--summary", type=Path, help="default: reports/<section>/gate_data.json")
    return stage_main(parser, argv, lambda params, args: run(
        args.pipeline, tasks.params_of(params, args.pipeline), args.out or paths.pipeline_dir(args.pipeline) / "gate",
        args.summary or paths.reports_dir(args.pipeline) / "gate_data.json"))


if __name__ == "__main__":
    raise SystemExit(main())
