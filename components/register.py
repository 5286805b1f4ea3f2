"""Stage `register`: log the evaluated detector to MLflow, register it, gate promotion.

Every new version of `trigger-word-<slug>` gets the alias `challenger`. It takes
`champion` only if, on the same evaluation data (the current test split and the test half
of the negative stream), both models at their own operating thresholds give:
  challenger FRR < champion FRR - gate.min_frr_improvement, and
  challenger FA/h <= champion FA/h + gate.fa_per_hour_tolerance.
An equal model does not take it. The first version becomes champion. The decision and its
reason are tags on the version and lines in reports/trigger_word/register/decision.json.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd

from components import paths, registry, tracking
from components.audio import detection as det
from components.audio.evaluation import at_threshold, score_split
from components.audio.model import TriggerWordModel, load_model
from components.detect import load_detector
from components.config import TriggerWordParams
from components.stage_cli import stage_main, staged_output
from components.train import read_split

PIPELINE = "trigger-word"
GATE_SPLITS = ("test", "negative_stream_test")


def gate_figures(model: TriggerWordModel, p: TriggerWordParams, data_dir: Path, split_dir: Path) -> dict:
    """FRR and FA/h of a model at its own threshold on the gate's evaluation data."""
    manifest = pd.read_csv(data_dir / "manifest.csv")
    clips = [c for name in GATE_SPLITS for c in score_split(model, data_dir, manifest, read_split(split_dir, name))]
    cfg = det.DetectionConfig(smoothing_steps=p.detection.smoothing_steps, refractory_s=p.detection.refractory_s,
                              threshold=model.threshold)
    result = at_threshold(clips, model.step_seconds, cfg, p.detection.window_after_s)
    return {"frr": result["frr"], "fa_per_hour": result["fa_per_hour"], "threshold": round(model.threshold, 5)}


def decide(challenger: dict, champion: dict | None, p: TriggerWordParams) -> tuple[bool, str]:
    if champion is None:
        return True, "no champion yet"
    gate = p.gate
    fa_ok = challenger["fa_per_hour"] <= champion["fa_per_hour"] + gate.fa_per_hour_tolerance
    better = challenger["frr"] < champion["frr"] - gate.min_frr_improvement
    figures = (f"FRR {challenger['frr']:.4f} vs {champion['frr']:.4f}, "
               f"FA/h {challenger['fa_per_hour']:.3f} vs {champion['fa_per_hour']:.3f}")
    if better and fa_ok:
        return True, f"beats champion: {figures}"
    why = "FA/h worse" if not fa_ok else "FRR not lower"
    return False, f"kept champion ({why}): {figures}"


def run(p: TriggerWordParams, detector_path: Path, data_dir: Path, split_dir: Path, report_dir: Path) -> dict:
    import mlflow

    client = mlflow.MlflowClient()
    name = registry.registered_name(p.slug)
    challenger = gate_figures(load_model(detector_path), p, data_dir, split_dir)
    current = registry.alias_version(client, name, registry.CHAMPION)
    champion = None
    if current is not None:
        champ_model = load_detector(f"models:/{name}/{current.version}")
        champion = gate_figures(champ_model, p, data_dir, split_dir)
    promote, reason = decide(challenger, champion, p)

    # log into the pipeline's run, or a run of our own when the stage runs alone
    with mlflow.start_run(run_id=os.environ.get("MLFLOW_RUN_ID"), experiment_id=None if os.environ.get(
            "MLFLOW_RUN_ID") else tracking.experiment_id(PIPELINE)) as run:
        info = registry.log_detector(detector_path)
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, name, tags={"trigger_word": p.word})
    client.set_registered_model_alias(name, registry.CHALLENGER, version.version)
    if promote:
        client.set_registered_model_alias(name, registry.CHAMPION, version.version)
    tags = {"gate.decision": "promoted" if promote else "rejected", "gate.reason": reason,
            "gate.frr": challenger["frr"], "gate.fa_per_hour": challenger["fa_per_hour"], "threshold": challenger["threshold"]}
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, str(value))
    decision = {"model": name, "version": int(version.version), "promoted": promote, "reason": reason,
                "champion_version": int(version.version) if promote else int(current.version),
                "challenger": challenger, "previous_champion": champion, "run_id": run_id}
    with staged_output(report_dir) as out:
        (out / "decision.json").write_text(json.dumps(decision, indent=2) + "\n")
    print(f"registered {name} version {version.version}: {'champion' if promote else 'challenger'} ({reason})")
    return {"model": name, "version": int(version.version), "champion_version": decision["champion_version"],
            "promoted": promote}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = paths.pipeline_dir(PIPELINE)
    parser.add_argument("--detector", type=Path, default=paths.MODELS_DIR / "trigger_word" / "detector.pt")
    parser.add_argument("--data", type=Path, default=base / "generated")
    parser.add_argument("--split", type=Path, default=base / "split")
    parser.add_argument("--report", type=Path, default=paths.REPORTS_DIR / "trigger_word" / "register")
    return stage_main(parser, argv, lambda params, args: run(
        params.trigger_word, args.detector, args.data, args.split, args.report))


if __name__ == "__main__":
    raise SystemExit(main())
