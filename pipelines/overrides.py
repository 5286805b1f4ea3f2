"""`--set KEY=VALUE` for one run: params.yaml carries the overrides while the run lasts.

DVC reads params.yaml to decide what is stale, so an override has to be in that file for
the run to be cached and reproduced correctly. The original text is put back afterwards,
comments and all; if someone edited the file during the run, their edit wins and we say so.
"""
from __future__ import annotations

import io
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ruamel.yaml import YAML

from components.config import Params, apply_overrides, parse_override, read_raw, validate_params


@contextmanager
def params_overridden(path: Path, overrides: list[str]) -> Iterator[Params]:
    """Validated params with the overrides applied, written into `path` for the duration."""
    params = validate_params(apply_overrides(read_raw(path), overrides), source=f"{path.name} with --set")
    if not overrides:
        yield params
        return
    original = path.read_text()
    yaml = YAML()  # round-trip mode keeps comments and key order
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
    written = buffer.getvalue()
    path.write_text(written)
    try:
        yield params
    finally:
        if path.read_text() == written:
            path.write_text(original)
        else:
            print(f"warning: {path} was edited during the run; left as it is now (overrides were {overrides})", file=sys.stderr)
