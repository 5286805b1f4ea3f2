"""Stage `register`: log the evaluated model to MLflow, register it, gate its promotion (DESIGN §3).

Every new version of the pipeline's registered model (the task's `registered_name`:
`trigger-word-<slug>`, `day-night`) gets the alias `challenger`. It takes `champion` only
if the task's gate (`decide`) says it beats the current champion, both measured now by the
task's `gate_figures` on the pipeline's fixed gate set (stage gate_data). An equal model
does not take it; the first version becomes champion. The decision, its reason, the
quality-floor note and the scalar gate figures are tags on the version; everything is in
reports/<pipeline>/register/decision.json.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from components import paths, registry, tasks, tracking
from components.stage_cli import stage_main, stage_parser, staged_output


def run(pipeline: str, p, evaluated_path: Path, gate_dir: Path, report_dir: Path) -> dict:
    import mlflow

    task = tasks.load(pipeline)
    client = mlflow.MlflowClient()
    name = task.registered_name(p)
    challenger = task.gate_figures(task.load_evaluated(str(evaluated_path)), p, gate_dir)
    current = registry.alias_version(client, name, registry.CHAMPION)
    champion = None
    if current is not None:
        champion = task.gate_figures(task.load_evaluated(f"models:/{name}/{current.version}"), p, gate_dir)
    verdict = task.decide(challenger, champion, p)
    promote, reason = verdict.promote, verdict.reason

    # log into the pipeline's run, or a run of our own when the stage runs alone
    with mlflow.start_run(run_id=os.environ.get("MLFLOW_RUN_ID"), experiment_id=None if os.environ.get(
            "MLFLOW_RUN_ID") else tracking.experiment_id(pipeline)) as run:
        info = task.log_model(evaluated_path)
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, name, tags=task.version_tags(p))
    client.set_registered_model_alias(name, registry.CHALLENGER, version.version)
    if promote:
        client.set_registered_model_alias(name, registry.CHAMPION, version.version)
    tags = {"gate.decision": "promoted" if promote else "rejected", "gate.reason": reason,
            "gate.target_note": verdict.target_note,
            **{f"gate.{k}": v for k, v in challenger.items() if not isinstance(v, (list, dict))}}
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, str(value))
    decision = {"model": name, "version": int(version.version), "promoted": promote, "reason": reason,
                "meets_target": verdict.meets_target, "target_note": verdict.target_note,
                "champion_version": int(version.version) if promote else int(current.version),
                "challenger": challenger, "previous_champion": champion, "run_id": run_id}
    with staged_output(report_dir) as out:
        (out / "decision.json").write_text(json.dumps(decision, indent=2) + "\n")
    print(f"registered {name} version {version.version}: {'champion' if promote else 'challenger'} ({reason})\n"
          f"{verdict.target_note}")
    return {"model": name, "version": int(version.version), "champion_version": decision["champion_version"],
            "promoted": promote}


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", type=Path, help="the evaluated model (default: models/<pipeline>/<task's file>)")
    parser.add_argument("--gate", type=Path, help="the gate set (default: data/<pipeline>/gate)")
    parser.add_argument("--report", type=Path, help="default: reports/<pipeline>/register")

    def body(params, args):
        base = paths.pipeline_dir(args.pipeline)
        return run(args.pipeline, tasks.params_of(params, args.pipeline),
                   args.model or paths.models_dir(args.pipeline) / tasks.load(args.pipeline).EVALUATED_FILE,
                   args.gate or base / "gate",
                   args.report or paths.reports_dir(args.pipeline) / "register")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
