"""`cs230`: the command line of the product.

    cs230 run trigger-word [--set KEY=VALUE ...] [--no-push]   run a pipeline end to end (Prefect flow)
    cs230 run day-night                                        the day/night image classifier, end to end
    cs230 run style-transfer                                   one style's fast network, end to end
    cs230 schedule trigger-word --cron "0 3 * * 0"             retrain weekly (Prefect deployment)
    cs230 ui                                                   the MLflow UI on 127.0.0.1
    cs230 export [--model URI] [--out DIR] [--face]            ONNX build for devices + size/latency/accuracy table
    cs230 export --style style-<name> [--out DIR]              the fast style network as ONNX
    cs230 detect PATH...  /  cs230 classify IMG...             the champion models on files (JSON lines)
    cs230 face embed|verify|enroll|identify|cluster ...        the face encoder on images (pipelines/face_cli.py)
    cs230 serve [--host H] [--port P] [--model URI] [--ray]     HTTP API over the champion models
    eval "$(cs230 team up)"  /  cs230 team down                the team services on this machine (pipelines/team.py)

Errors a user can cause print one line and exit non-zero; they never print a traceback.
"""
from __future__ import annotations

import argparse
import json
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
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    # stages stream their own progress; a failure is reported in one line by cmd_run, so
    # Prefect's own console logs (and its tracebacks) stay off unless asked for
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    # Prefect's ephemeral API server gets 20 s to start by default; on a busy 2-core machine
    # that was measured too short (a fresh clone's first run failed), so it gets longer
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
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


def tracking_error(exc) -> str:
    """One line for an MLflow error: a refused login says which variables to check."""
    where = f"MLflow at {os.environ['MLFLOW_TRACKING_URI']}"
    if exc.get_http_status_code() in (401, 403):
        return (f"{where} refused the credentials (HTTP {exc.get_http_status_code()}): check "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    return f"{where}: {str(exc).splitlines()[0]}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: stage group ended, params restored, run KILLED


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from mlflow.exceptions import MlflowException

    from components.config import ParamsError
    from pipelines.overrides import params_overridden
    from pipelines.runguard import WorkspaceBusy, guarded_run

    ensure_raw_inputs()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with guarded_run(), params_overridden(PARAMS_FILE, args.set or []):
            from pipelines.flow import FLOWS, StageFailed

            started = time.perf_counter()
            try:
                result = FLOWS[args.pipeline](push=not args.no_push)
            except StageFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                print("completed stages stay cached; fix the cause and run again to resume", file=sys.stderr)
                return 1
            except MlflowException as exc:  # the tracking server refused the run itself
                print(f"error: {tracking_error(exc)}", file=sys.stderr)
                return 1
            except RuntimeError as exc:  # Prefect's API (ephemeral or PREFECT_API_URL) did not answer
                if "Prefect" not in str(exc):
                    raise
                print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
                return 1
    except (WorkspaceBusy, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(result, time.perf_counter() - started)
    return 0


def print_summary(result, seconds: float) -> None:
    from pipelines.stages import PIPELINES

    rows = [("stage", "status", "seconds", "key figures")]
    rows += [(o.stage, o.status, f"{o.seconds:.1f}", o.figures) for o in result.outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    print(f"\ntotal {seconds:.1f} s; outputs {'pushed to the DVC remote' if result.pushed else 'not pushed (--no-push)'}")
    decision = Path("reports") / PIPELINES[result.pipeline] / "register" / "decision.json"
    d = json.loads(decision.read_text()) if decision.is_file() else {}
    if d.get("run_id") == result.mlflow_run_id:  # what this run decided, not an older file
        print(f"registry: {d['model']} version {d['version']}: {d['summary']}")
        print(f"quality: {d['target_note']}")  # says WARNING when the champion misses the target
    else:
        print("registry: the register stage did not run; no model was registered or promoted")
    print(f"MLflow run {result.mlflow_run_id} at {os.environ['MLFLOW_TRACKING_URI']}; open the UI with: cs230 ui")


def model_error(exc, args: argparse.Namespace, word: str) -> int:
    """One line for a model that cannot be loaded, with the way out when it is the champion."""
    hint = ""
    if exc.not_found and not args.model:
        override = f' --set trigger_word.word="{word}"' if args.word else ""
        hint = f"; no champion registered yet: run `cs230 run trigger-word{override}` first, or pass --model"
    print(f"error: model {exc}{hint}", file=sys.stderr)
    return 2


def bad_detection_flags(args: argparse.Namespace) -> str | None:
    """Why the detection flags are unusable, or None."""
    from components.audio.detection import check_settings
    from components.stage_cli import detection_overrides

    try:
        check_settings(**detection_overrides(args))
    except ValueError as exc:
        return f"--{str(exc).replace('_', '-')}"
    return None


def cmd_detect(args: argparse.Namespace) -> int:
    """One JSON line per audio file (DESIGN §4). Exit 0: every file read; 1: some were not;
    2: no model (or bad params). The working directory is the project root by now; user
    paths are taken from `args.invocation_dir`, where the command was run."""
    import torch

    from components.config import ParamsError, read_raw, validate_params
    from components.detect import champion_uri, detect_inputs, iter_inputs, load_detector
    from components.refs import ModelLoadError, is_model_uri
    from components.stage_cli import detection_overrides

    torch.set_num_threads(1)  # real-time factor ~0.003 on one core; more threads only add overhead
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr stays quiet
    bad = bad_detection_flags(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    try:
        raw = read_raw(PARAMS_FILE)
        if args.word is not None and isinstance(raw.get("trigger_word"), dict):
            raw["trigger_word"]["word"] = args.word
        params = validate_params(raw, "params.yaml" + (" with --word" if args.word else "")).trigger_word
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ref = args.model or champion_uri(params.slug)
    if not is_model_uri(ref):
        ref = str(args.invocation_dir / ref)
    try:
        model = load_detector(ref, tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    except ModelLoadError as exc:
        return model_error(exc, args, params.word)
    failed = 0
    try:
        cfg = model.detection_config(**detection_overrides(args))  # the model's own, unless a flag says
        for record in detect_inputs(model, iter_inputs(args.paths, args.invocation_dir), cfg):
            failed += "error" in record
            print(json.dumps(record), flush=True)
    except BrokenPipeError:  # e.g. `cs230 detect ... | head -1`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failed else 0


def cmd_classify(args: argparse.Namespace) -> int:
    """One JSON line per image (DESIGN §5). Exit 0: every file read; 1: some were not; 2: no model."""
    import torch

    from components.classify import CHAMPION_URI, classify_inputs, iter_inputs, load_classifier_ref
    from components.refs import ModelLoadError, is_model_uri

    torch.set_num_threads(1)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ref = args.model or CHAMPION_URI
    try:
        model = load_classifier_ref(ref if is_model_uri(ref) else str(args.invocation_dir / ref),
                                    tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    except ModelLoadError as exc:
        hint = "; no champion registered yet: run `cs230 run day-night` first, or pass --model" \
            if exc.not_found and not args.model else ""
        print(f"error: model {exc}{hint}", file=sys.stderr)
        return 2
    failed = 0
    try:
        for record in classify_inputs(model, iter_inputs(args.paths, args.invocation_dir)):
            failed += "error" in record
            print(json.dumps(record), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failed else 0


def cmd_stylize(args: argparse.Namespace) -> int:
    """Gatys, or a registered fast network (DESIGN §5): one JSON line; exit 2 on bad input."""
    from components.stylize import run

    return run(args, args.invocation_dir)


def cmd_export(args: argparse.Namespace) -> int:
    """The on-device build (DESIGN §6): the stage components/export.py, with user paths taken from
    where the command was run. Exit 2: no model, bad params or data."""
    from components.export import main as export_main
    from components.refs import is_model_uri
    from components.stage_cli import detection_overrides

    if args.style:  # the fast style network instead of the trigger word's build
        from components import style_export
        ref = args.style if args.style.startswith(("models:/", "style-")) else str(args.invocation_dir / args.style)
        return style_export.run(ref, args.invocation_dir / args.out if args.out else style_export.DEFAULT_OUT)
    argv = ["--out", str(args.invocation_dir / args.out)] if args.out else []
    if args.model:
        argv += ["--model", args.model if is_model_uri(args.model) else str(args.invocation_dir / args.model)]
    if args.face:  # the face encoder instead (components/face_export.py): no detection settings
        from components.face_export import main as face_export_main

        return face_export_main(argv)
    for key, value in detection_overrides(args).items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return export_main(argv)


def cmd_schedule(args: argparse.Namespace) -> int:
    from pipelines.schedule import serve_on_schedule

    if bool(args.cron) == bool(args.interval):
        print("error: give exactly one of --cron and --interval", file=sys.stderr)
        return 2
    if args.cron:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=args.cron)
        except ValueError:
            print(f"error: --cron {args.cron!r}: not a valid cron expression (e.g. \"0 3 * * 0\")", file=sys.stderr)
            return 2
    serve_on_schedule(args.pipeline, args.cron, args.interval, args.limit)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The HTTP API over the champion models (DESIGN §6) until Ctrl-C. Exit 2: no model, bad
    params or flags. The token comes from --token or CS230_SERVE_TOKEN, read here only."""
    from components.config import ParamsError, read_raw, validate_params
    from components.refs import ModelLoadError, is_model_uri
    from components.serve import ServeConfig
    from components.serving.holder import MODEL_KINDS, ModelHolder
    from components.stage_cli import detection_overrides

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    bad = bad_detection_flags(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    try:
        raw = read_raw(PARAMS_FILE)
        if args.word is not None and isinstance(raw.get("trigger_word"), dict):
            raw["trigger_word"]["word"] = args.word
        params = validate_params(raw, "params.yaml" + (" with --word" if args.word else ""))
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limits = params.serve
    host = args.host or limits.host
    port = limits.port if args.port is None else args.port
    replicas = limits.replicas if args.replicas is None else args.replicas
    if not 1 <= port <= 65535 or replicas < 1 or (args.replicas is not None and not args.ray):
        print("error: --port must be 1-65535; --replicas (>= 1) goes with --ray", file=sys.stderr)
        return 2
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    given = {kind: ref if is_model_uri(ref) else str(args.invocation_dir / ref)
             for kind, ref in (("trigger-word", args.model), ("day-night", args.classifier),
                               ("face", args.face), ("style", args.style)) if ref}
    if not given:  # every champion that is registered; none: the trigger word's error below says why
        champions = {kind: k.champion(params) for kind, k in MODEL_KINDS.items()}
        probe = ModelHolder(champions, tracking_uri)
        probe.refresh()
        given = {kind: ref for kind, ref in champions.items() if kind not in probe.errors} or \
            {"trigger-word": champions["trigger-word"]}
    config = ServeConfig(refs=given,
                         tracking_uri=tracking_uri, limits=limits, detection_overrides=detection_overrides(args),
                         token=args.token or os.environ.get("CS230_SERVE_TOKEN") or None,
                         face_index=str(args.invocation_dir / args.face_index) if args.face_index else None,
                         style_max_side=params.style_transfer.max_size)
    if host not in ("127.0.0.1", "localhost", "::1") and not config.token:
        print(f"warning: serving on {host} without a token: anyone who reaches it can use it", file=sys.stderr)
    try:
        if args.ray:
            from components.serving import ray_app

            ModelHolder(config.refs, config.tracking_uri).refresh(strict=True)  # fail here, not in N replicas
            ray_app.run(config, host, port, replicas, limits.replica_cpus, os.environ.get("RAY_ADDRESS"))
        else:
            from components.serve import run

            run(config, host, port)
    except ModelLoadError as exc:
        return model_error(exc, args, params.trigger_word.word)
    except KeyboardInterrupt:  # Ray mode: Ctrl-C ends the wait; uvicorn handles it itself
        pass
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """`mlflow ui` over the configured store (default: the project's sqlite and mlartifacts/)."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", Path("mlartifacts").resolve().as_uri()]
    print(f"MLflow UI at http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    return subprocess.call(cmd)


def build_parser() -> argparse.ArgumentParser:
    from components.stage_cli import add_detection_flags
    from pipelines.stages import PIPELINES

    parser = argparse.ArgumentParser(prog="cs230", description="CS230 MLOps pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline end to end")
    run.add_argument("pipeline", choices=sorted(PIPELINES))
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a dotted params.yaml key for this run (repeatable)")
    run.add_argument("--no-push", action="store_true", help="do not push stage outputs to the DVC remote")
    run.set_defaults(handler=cmd_run)
    schedule = sub.add_parser("schedule", help="retrain on a schedule (a Prefect deployment)")
    schedule.add_argument("pipeline", choices=sorted(PIPELINES))
    schedule.add_argument("--cron", help='cron expression, e.g. "0 3 * * 0" (Sundays 03:00)')
    schedule.add_argument("--interval", type=float, metavar="SECONDS", help="run every N seconds instead")
    schedule.add_argument("--limit", type=int, help=argparse.SUPPRESS)  # concurrent runs (tests)
    schedule.set_defaults(handler=cmd_schedule)
    serve = sub.add_parser("serve", help="HTTP API over the champion models (default 127.0.0.1:8080)")
    serve.add_argument("--host", help="interface to bind (default: params.yaml serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: params.yaml serve.port, 8080)")
    serve.add_argument("--word", metavar="PHRASE", help="serve the champion of this phrase (default: params.yaml)")
    serve.add_argument("--model", metavar="PATH_OR_URI", help="serve this MLflow model URI or saved detector "
                       "file/folder instead of models:/trigger-word-<slug>@champion")
    serve.add_argument("--classifier", metavar="PATH_OR_URI", help="serve this day-night classifier (URI or saved "
                       "file/folder). Default: every registered champion (trigger-word-<slug>, day-night)")
    serve.add_argument("--face", metavar="PATH_OR_URI", help="serve this face encoder (URI or saved file/folder; "
                       "default: models:/face-encoder@champion when registered)")
    serve.add_argument("--face-index", type=Path, metavar="DIR", help="the gallery POST /v1/face/identify "
                       "searches (from cs230 face enroll)")
    serve.add_argument("--style", metavar="PATH_OR_URI", help="serve this fast style network (URI or saved file) "
                       "instead of the champion of style-<style_transfer.style>")
    serve.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every route but /healthz "
                       "(default: env CS230_SERVE_TOKEN; the variable keeps it out of `ps`)")
    add_detection_flags(serve)  # for every trigger-word model served, a new champion included
    serve.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment (local Ray, or RAY_ADDRESS)")
    serve.add_argument("--replicas", type=int, metavar="N", help="Ray Serve replicas (default: params.yaml serve.replicas)")
    serve.set_defaults(handler=cmd_serve, invocation_dir=Path.cwd())
    ui = sub.add_parser("ui", help="open the MLflow UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)
    detect = sub.add_parser("detect", help="find the trigger word in audio files (JSON lines)")
    detect.add_argument("paths", nargs="+", metavar="PATH", help="WAV/FLAC file or folder (recursive)")
    detect.add_argument("--model", metavar="URI", help="MLflow model URI or saved detector file/folder "
                        "(default: models:/trigger-word-<slug>@champion)")
    add_detection_flags(detect)
    detect.add_argument("--word", metavar="PHRASE", help="use the champion of this phrase (default: params.yaml)")
    # main() changes to the project root before the handler: remember where relative paths start
    detect.set_defaults(handler=cmd_detect, invocation_dir=Path.cwd())
    classify = sub.add_parser("classify", help="day or night? for image files (JSON lines)")
    classify.add_argument("paths", nargs="+", metavar="IMG", help="image file or folder (recursive)")
    classify.add_argument("--model", metavar="URI", help="MLflow model URI or saved classifier file/folder "
                          "(default: models:/day-night@champion)")
    classify.set_defaults(handler=cmd_classify, invocation_dir=Path.cwd())
    stylize = sub.add_parser("stylize", help="paint CONTENT in the style of STYLE (Gatys; --model: a fast network)")
    from components.stylize import add_arguments as add_stylize_arguments

    add_stylize_arguments(stylize)
    stylize.set_defaults(handler=cmd_stylize, invocation_dir=Path.cwd())
    export = sub.add_parser("export", help="ONNX build for devices (fp32, int8, pruned, distilled) and its report")
    export.add_argument("--model", metavar="PATH_OR_URI", help="MLflow model URI or saved detector file/folder "
                        "(default: models:/trigger-word-<slug>@champion)")
    export.add_argument("--style", metavar="NAME_OR_PATH", help="export this fast style network instead "
                        "(style-<name>: its champion; a URI or a saved file) to DIR/style_net.onnx")
    export.add_argument("--out", type=Path, metavar="DIR", help="where the .onnx files and export_report.json go "
                        "(default: models/trigger_word/export)")
    add_detection_flags(export)
    export.add_argument("--face", action="store_true", help="export the face encoder instead "
                        "(default model: models:/face-encoder@champion; out: models/face/export)")
    export.set_defaults(handler=cmd_export, invocation_dir=Path.cwd())
    from pipelines.face_cli import add_parser as add_face_parser
    from pipelines.team import add_parser as add_team_parser

    add_face_parser(sub)
    add_team_parser(sub)
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
