"""Stage `register`: put the evaluated model in the MLflow registry and gate its promotion (DESIGN §3).

The registry is state outside DVC's view, so this stage runs on every pipeline run
(`always_changed` in dvc.yaml) and decides from what the configured registry holds:
- A model is identified by a content hash of its file and of the gate data it is judged
  on (tag `cs230.identity`). When the registry already has a version with that identity,
  nothing new is registered: a rerun or `dvc repro -f` never duplicates a version. When
  it has none, the model is logged into the pipeline's run and registered.
- Every new version gets the alias `challenger`. It takes `champion` only if the task's
  gate (`decide`) says it beats the current champion, both measured by the task's
  `gate_figures` on the same fixed gate data. The first version becomes champion, so a
  fresh clone's first run always ends with a usable model; whether it meets the quality
  target is said in the summary, decision.json and the tag `gate.meets_target`.
- Only "no such model" means "no champion": any other registry error stops the stage
  with one line, so a store that failed to answer never promotes anything.

reports/<pipeline>/register/decision.json says what this run decided. It describes this
machine's registry, so it is not a DVC output and is never committed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from components import paths, registry, tasks, tracking
from components.gate_data import read_gate_info
from components.refs import ModelLoadError
from components.stage_cli import StageError, stage_main, stage_parser

IDENTITY_TAG = "cs230.identity"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(model_sha256: str, gate_hash: str) -> str:
    """One model judged on one gate set: the same identity on every machine and store."""
    return hashlib.sha256(f"{model_sha256}:{gate_hash}".encode()).hexdigest()[:32]


def run(pipeline: str, p, evaluated_path: Path, gate_dir: Path, report_dir: Path) -> dict:
    task = tasks.load(pipeline)
    name = task.registered_name(p)
    if not evaluated_path.is_file():
        raise StageError(f"{evaluated_path}: no evaluated model (run the evaluate stage first)")
    gate_hash = read_gate_info(gate_dir)["gate_hash"]
    model_sha = file_sha256(evaluated_path)
    identity = model_identity(model_sha, gate_hash)
    try:
        decision = _register(pipeline, task, p, name, evaluated_path, gate_dir,
                             {IDENTITY_TAG: identity, "model.sha256": model_sha})
    except registry.RegistryError as exc:
        raise StageError(str(exc)) from None
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "decision.json").write_text(json.dumps(decision, indent=2) + "\n")
    print(f"{decision['model']} version {decision['version']}: {decision['summary']}\nquality: {decision['target_note']}")
    return {k: decision[k] for k in ("model", "version", "registered", "promoted", "champion_version",
                                     "meets_target")}


def _register(pipeline: str, task, p, name: str, evaluated_path: Path, gate_dir: Path, identity_tags: dict) -> dict:
    """Register the model unless the registry has it; move champion if the gate says so."""
    client = registry.client()
    existing = registry.find_version(client, name, IDENTITY_TAG, identity_tags[IDENTITY_TAG])
    champion = registry.alias_version(client, name, registry.CHAMPION)
    run_id = tracking.pipeline_run_id()
    if existing is not None:
        promote = champion is None  # the champion alias was removed: this model is the best known
        if promote:
            registry.set_alias(client, name, registry.CHAMPION, existing.version)
        kept = existing if promote else champion
        meets = kept.tags.get("gate.meets_target") == "True"
        summary = (f"already registered (identity {identity_tags[IDENTITY_TAG][:12]}), nothing new"
                   + ("; no champion was set, so it is champion now" if promote else "")
                   + f"; champion: version {kept.version}")
        note = (f"champion version {kept.version} {'meets' if meets else 'WARNING: does NOT meet'} the target "
                "(its gate.* tags give the figures)")
        return {"model": name, "version": int(existing.version), "registered": False, "promoted": promote,
                "champion_version": int(kept.version), "summary": summary, "meets_target": meets,
                "target_note": note, "run_id": run_id}

    challenger = task.gate_figures(task.load_evaluated(str(evaluated_path)), p, gate_dir)
    previous = None
    if champion is not None:
        try:
            previous = task.gate_figures(task.load_evaluated(f"models:/{name}/{champion.version}"), p, gate_dir)
        except ModelLoadError as exc:  # the champion exists but cannot be judged: never promote blindly
            raise registry.RegistryError(f"champion version {champion.version} cannot be loaded: {exc}") from None
    gate = task.decide(challenger, previous, p)
    # the model is logged into the pipeline's run, or into a run of its own when the stage runs alone
    with registry.model_run(run_id, tracking.experiment_id(pipeline)) as run:
        info = task.log_model(evaluated_path)
        run_id = run.info.run_id
    scalars = {f"gate.{k}": v for k, v in challenger.items() if isinstance(v, (int, float, str, bool))}
    tags = {**task.version_tags(p), **identity_tags, **scalars, "gate.decision": "promoted" if gate.promote
            else "rejected", "gate.reason": gate.reason}  # gate.meets_target: this version's own figures
    if gate.promote:  # the note speaks of the champion the decision leaves: this version
        tags["gate.target_note"] = gate.target_note
    version = registry.register(info.model_uri, name, tags)
    registry.set_alias(client, name, registry.CHALLENGER, version)
    if gate.promote:
        registry.set_alias(client, name, registry.CHAMPION, version)
    champion_version = version if gate.promote else champion.version
    summary = f"{'champion' if gate.promote else 'challenger'} ({gate.reason}); champion: version {champion_version}"
    return {"model": name, "version": int(version), "registered": True, "promoted": gate.promote,
            "champion_version": int(champion_version), "summary": summary, "reason": gate.reason,
            "meets_target": gate.meets_target, "target_note": gate.target_note, "challenger": challenger,
            "previous_champion": previous, "run_id": run_id}


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", type=Path, help="the evaluated model (default: models/<pipeline>/<task's file>)")
    parser.add_argument("--gate-data", type=Path, help="default: data/<pipeline>/gate")
    parser.add_argument("--report", type=Path, help="default: reports/<pipeline>/register")

    def body(params, args):
        return run(args.pipeline, tasks.params_of(params, args.pipeline),
                   args.model or paths.models_dir(args.pipeline) / tasks.load(args.pipeline).evaluated_file,
                   args.gate_data or paths.pipeline_dir(args.pipeline) / "gate",
                   args.report or paths.reports_dir(args.pipeline) / "register")
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
