"""The stage graph, read from dvc.yaml: the only place the stage list is written down.

A pipeline's stages are the dvc.yaml stages named `<section>-<stage>` (for example
`trigger_word-generate`), in file order, which is also dependency order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.paths import DVC_YAML
from components.tasks import PIPELINES  # CLI name -> params section and stage prefix


@dataclass(frozen=True)
class Stage:
    name: str            # the dvc.yaml stage name, e.g. trigger_word-generate
    short: str           # e.g. generate
    metrics: tuple[str, ...]


def pipeline_stages(pipeline: str, dvc_yaml: Path = DVC_YAML) -> list[Stage]:
    prefix = PIPELINES[pipeline] + "-"
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    found = []
    for name, body in stages.items():
        if name.startswith(prefix):
            metrics = tuple(next(iter(m)) if isinstance(m, dict) else m for m in body.get("metrics", []))
            found.append(Stage(name, name.removeprefix(prefix), metrics))
    return found


def key_figures(stage: Stage, limit: int = 4) -> str:
    """A few scalar figures from the stage's DVC metrics files, for the summary table."""
    figures = []
    for path in stage.metrics:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        figures += [f"{k}={v}" for k, v in data.items() if isinstance(v, (int, float, str))]
    return ", ".join(figures[:limit])
