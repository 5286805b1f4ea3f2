"""`cs230`: the command line of the product.

    cs230 run trigger-word [--set KEY=VALUE ...]   run a pipeline end to end (Prefect flow)

Errors a user can cause print one line and exit non-zero; they never print a traceback.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from components.paths import PARAMS_FILE, RAW_DIR, find_project_root

TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def use_embedded_defaults(root: Path) -> None:
    """Environment for the embedded services, unless the user pointed them elsewhere."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # stage subprocesses (dvc repro) must find this interpreter's tools first
    bin_dir = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(bin_dir):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def ensure_raw_inputs() -> None:
    """data/raw must exist for DVC; a fresh clone gets it from the remote or empty."""
    if RAW_DIR.exists():
        return
    import yaml

    tracked = yaml.safe_load(Path("data.dvc").read_text())["outs"][0].get("nfiles", 0)
    if tracked:
        print(f"data/raw is missing: pulling its {tracked} files from the DVC remote")
        if subprocess.run(["dvc", "pull", "data.dvc"]).returncode != 0:
            raise SystemExit("error: data.dvc: `dvc pull data.dvc` failed; configure the remote (README, Sharing data)")
    RAW_DIR.mkdir(parents=True, exist_ok=True)


def cmd_run(args: argparse.Namespace) -> int:
    from components.config import ParamsError
    from pipelines.overrides import params_overridden

    ensure_raw_inputs()
    try:
        with params_overridden(PARAMS_FILE, args.set or []):
            from pipelines.flow import FLOWS, StageFailed

            started = time.perf_counter()
            try:
                outcomes = FLOWS[args.pipeline]()
            except StageFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                print("completed stages stay cached; fix the cause and run again to resume", file=sys.stderr)
                return 1
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(outcomes, time.perf_counter() - started)
    return 0


def print_summary(outcomes, seconds: float) -> None:
    rows = [("stage", "status", "seconds", "key figures")]
    rows += [(o.stage, o.status, f"{o.seconds:.1f}", o.figures) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    print(f"\ntotal {seconds:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    from pipelines.stages import PIPELINES

    parser = argparse.ArgumentParser(prog="cs230", description="CS230 MLOps pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline end to end")
    run.add_argument("pipeline", choices=sorted(PIPELINES))
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a dotted params.yaml key for this run (repeatable)")
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = find_project_root()
    if root is None:
        print("error: not inside a cs230-mlops project (no dvc.yaml and params.yaml here or above)", file=sys.stderr)
        return 2
    os.chdir(root)
    use_embedded_defaults(root)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; completed stages stay cached", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
