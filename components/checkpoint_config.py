"""Configs saved inside model files: each domain's checkpoint schema is a frozen dataclass of
required fields, built from params.yaml's validated section (components/config.py checks the
values), and read back from a checkpoint's dict here."""
from __future__ import annotations

import dataclasses


def strict_from_dict(cls, d: dict):
    """Build a config dataclass from a (checkpoint's) dict, rejecting unknown and missing keys loudly."""
    fields = dataclasses.fields(cls)
    unknown = set(d) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{cls.__name__} lacks keys {missing}")
    return cls(**d)
