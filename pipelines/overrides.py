"""`--set KEY=VALUE` for one run: params.yaml carries the overrides while the run lasts.

DVC reads params.yaml to decide what is stale, so an override has to be in that file for
the run to be cached and reproduced correctly. The original text is put back afterwards,
comments and all; if someone edited the file during the run, their edit wins and we say so.
Both texts are journaled in the run's state file (pipelines/runguard.py) before the file is
touched, and every write is one rename, so a run killed at any point, even by SIGKILL, is
undone by its watchdog or by the next run.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ruamel.yaml import YAML

from components.config import Params, apply_overrides, parse_override, read_raw, validate_params
from pipelines.runguard import atomic_write, restore_params, update_state


def overridden_text(original: str, overrides: list[str]) -> str:
    """`original` with each dotted key set, comments and key order kept (ruamel round trip)."""
    yaml = YAML()
    doc = yaml.load(original)
    for text in overrides:
        key, value = parse_override(text)
        *parents, last = key.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()


@contextmanager
def params_overridden(path: Path, overrides: list[str]) -> Iterator[Params]:
    """Validated params with the overrides applied, written into `path` for the duration."""
    params = validate_params(apply_overrides(read_raw(path), overrides), source=f"{path.name} with --set")
    if not overrides:
        yield params
        return
    original = path.read_text()
    journal = {"path": str(path), "original": original, "written": overridden_text(original, overrides),
               "overrides": overrides}
    update_state(params=journal)
    atomic_write(path, journal["written"])
    try:
        yield params
    finally:
        restore_params({"params": journal})
        update_state(params=None)
