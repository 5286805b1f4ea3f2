"""Configs saved inside model files: each domain's checkpoint schema is a frozen dataclass of
required fields, built from params.yaml's validated section (components/config.py checks the
values), and read back from a checkpoint's dict here; also the reading of a model file itself, with
one-line errors that name the file."""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from components.errors import first_line


def read_checkpoint(path: str | Path, fmt: str, what: str) -> dict:
    """A saved model file's dict. A missing file raises FileNotFoundError ("no <what> at ..."),
    and a file that is not an `fmt` checkpoint one line of ValueError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean "not our checkpoint"
        raise ValueError(f"{path} is not a {fmt} checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} checkpoint")
    return ckpt


@contextmanager
def rebuilding(path: str | Path, fmt: str) -> Iterator[None]:
    """Around rebuilding a model from a checkpoint's dict: a missing key, a wrong type or shape
    becomes one line naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: broken {fmt} checkpoint: {first_line(e)}") from None


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
