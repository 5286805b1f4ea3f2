"""What a user names on the command line or to the server: a model and input files.

A model reference is an MLflow model URI (`models:/day-night@champion`, `runs:/...`), a
saved model file, or a folder holding one (searched recursively for the task's file name,
e.g. `detector.pt`, `classifier.pt`). Inputs are files, or folders searched recursively for
the files a command reads. MLflow is imported only when a model URI is given.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlparse

from components.errors import first_line

Model = TypeVar("Model")


class ModelLoadError(Exception):
    """The model could not be found or loaded; `str()` is one line naming the model."""

    def __init__(self, message: str, not_found: bool = False):
        super().__init__(message)
        self.not_found = not_found  # nothing registered/saved there (as opposed to a bad file)


def is_model_uri(ref: str) -> bool:
    """models:/..., runs:/..., s3://... are URIs; a path (even C:\\...) is not."""
    return len(urlparse(ref).scheme) > 1


def find_model_file(folder: Path, file_name: str) -> Path:
    found = sorted(folder.rglob(file_name), key=lambda p: (len(p.parts), p))
    if not found:
        raise ModelLoadError(f"no {file_name} in {folder}", not_found=True)
    return found[0]


def _load_file(path: Path, ref: str, load: Callable[[Path], Model]) -> Model:
    try:
        return load(path)
    except Exception as exc:  # torch/pickle/state-dict errors vary; all mean "not this kind of model"
        raise ModelLoadError(f"{ref}: cannot load {path.name} ({first_line(exc)})") from None


def _missing_sqlite_store(tracking_uri: str | None) -> str | None:
    """The file of a sqlite tracking URI that does not exist (MLflow would create it)."""
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file():
            return str(path)
    return None


def load_model_ref(ref: str, file_name: str, load: Callable[[Path], Model], tracking_uri: str | None = None) -> Model:
    """`load(file)` of the model `ref` names: a URI (its artifacts downloaded), a file, or a
    folder holding `file_name`."""
    if not is_model_uri(ref):
        path = Path(ref)
        if path.is_dir():
            return _load_file(find_model_file(path, file_name), ref, load)
        if not path.is_file():
            raise ModelLoadError(f"{ref}: no such file or directory", not_found=True)
        return _load_file(path, ref, load)
    missing = _missing_sqlite_store(tracking_uri) if ref.startswith(("models:", "runs:")) else None
    if missing:
        raise ModelLoadError(f"{ref}: the MLflow store {missing} does not exist", not_found=True)
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="cs230-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(ref, dst_path=tmp, tracking_uri=tracking_uri)
        except MlflowException as exc:
            raise ModelLoadError(f"{ref}: {first_line(exc)}",
                                 not_found=exc.error_code == "RESOURCE_DOES_NOT_EXIST") from None
        except Exception as exc:  # network, permissions, a broken store: say why, one line
            raise ModelLoadError(f"{ref}: {type(exc).__name__}: {first_line(exc)}") from None
        local = Path(local)
        return _load_file(local if local.is_file() else find_model_file(local, file_name), ref, load)


@dataclass(frozen=True)
class Input:
    name: str  # as the user gave it, or the directory as given joined with the found path
    path: Path | None  # absolute; None when `error` says why there is nothing to read
    error: str | None = None


def iter_inputs(paths: list[str], base: Path, find: Callable[[Path], list[Path]], what: str) -> Iterator[Input]:
    """Each given file, and every file `find` lists under each given directory.

    Relative paths are taken from `base` (where the user ran the command). A named file is
    tried whatever its suffix; a directory contributes what `find` returns (`what` names it).
    """
    for given in paths:
        path = base / given
        if path.is_dir():
            found = find(path)
            if not found:
                yield Input(given, None, f"no {what} files in this directory")
            for p in found:
                yield Input(os.path.join(given, str(p.relative_to(path))), p)
        elif path.is_file():
            yield Input(given, path)
        elif path.exists():
            yield Input(given, None, "not a regular file or directory")
        else:
            yield Input(given, None, "no such file or directory")

