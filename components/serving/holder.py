"""The models a server answers with, and how a new champion replaces the old one.

`MODEL_KINDS` is the table of what can be served: a kind's champion URI (from params) and
how to load it. Adding a model kind (day-night, face-encoder) is one entry there plus
its routes. A kind is served from a reference: `models:/<name>@<alias>` follows the alias
(re-read on every `refresh`), a file or folder is reloaded when its detector file changes,
any other URI (`models:/<name>/3`, `runs:/...`) is loaded once.

The swap is atomic: a new version is loaded whole, off to the side, then one dict reference
is replaced. A request takes `holder.get(kind)` once and keeps that `Loaded` to its end, so
it never sees a half-loaded model or two versions.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from components import classify, detect, face_commands, stylize
from components.refs import ModelLoadError, find_model_file, is_model_uri

log = logging.getLogger("cs230.serve")
_ALIAS_REF = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


@dataclass(frozen=True)
class ModelKind:
    champion: Callable[[Any], str]  # Params -> models:/<registered name>@champion
    load: Callable[[str, str | None], Any]  # (URI or path, tracking URI) -> model in eval mode
    file_name: str  # the saved model's file inside a folder or a registered version


MODEL_KINDS: dict[str, ModelKind] = {
    "trigger-word": ModelKind(lambda p: detect.champion_uri(p.trigger_word.slug), detect.load_detector,
                              detect.DETECTOR_FILE),
    "day-night": ModelKind(lambda p: classify.CHAMPION_URI, classify.load_classifier_ref, classify.CLASSIFIER_FILE),
    "face": ModelKind(lambda p: face_commands.CHAMPION_URI, face_commands.load_encoder_ref, face_commands.ENCODER_FILE),
    "style": ModelKind(lambda p: f"models:/{_style_name(p)}@champion", stylize.load_style_ref, stylize.FAST_FILE),
}


def _style_name(p) -> str:
    from components.tasks.style_transfer.scoring import registered_name
    return registered_name(p.style_transfer)


@dataclass(frozen=True)
class Loaded:
    """One loaded model version; immutable, so a request can hold it safely."""
    kind: str
    name: str  # registered name, or the file name for a --model path
    version: str | None  # registry version; None for a file
    alias: str | None  # the alias followed (champion), if any
    source: str  # exactly what was loaded: models:/<name>/<version>, a URI or a path
    model: Any = field(repr=False)
    metrics: dict = field(default_factory=dict)
    stamp: tuple | None = None  # (mtime_ns, size) of a file source, to notice a rewrite
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "version": self.version, "alias": self.alias,
                "source": self.source, "metrics": self.metrics,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))}


def _metrics(tags: dict, model: Any) -> dict:
    """The numeric gate.* tags of a version (gate.frr, gate.roc_auc, gate.threshold...) as numbers."""
    out = {}
    for tag, value in tags.items():
        try:
            if tag.startswith("gate."):
                out[tag.removeprefix("gate.")] = float(value)
        except (TypeError, ValueError):
            pass
    if "threshold" not in out and hasattr(model, "threshold"):
        out["threshold"] = round(float(model.threshold), 5)
    return out


class ModelHolder:
    """kind -> `Loaded`, refreshed on demand (the poll, POST /v1/admin/reload)."""

    def __init__(self, refs: dict[str, str], tracking_uri: str | None = None):
        unknown = sorted(set(refs) - set(MODEL_KINDS))
        if unknown:
            raise ValueError(f"unknown model kind(s) {unknown}; known: {sorted(MODEL_KINDS)}")
        self.refs, self.tracking_uri = dict(refs), tracking_uri
        self._loaded: dict[str, Loaded] = {}  # replaced whole, never mutated: readers need no lock
        self._reload_lock = threading.Lock()  # one refresh at a time (poll and admin route)
        self.errors: dict[str, str] = {}  # kind -> why its last refresh failed (cleared on success)

    def get(self, kind: str) -> Loaded:
        return self._loaded[kind]  # KeyError: not served

    def loaded(self) -> list[Loaded]:
        return list(self._loaded.values())

    def refresh(self, strict: bool = False) -> dict[str, str]:
        """Load what changed; {kind: "version 2 -> 3"} for each swap. A failure keeps the
        current model (and is recorded in `errors`) unless `strict` (startup)."""
        changes = {}
        with self._reload_lock:
            for kind, ref in self.refs.items():
                current = self._loaded.get(kind)
                try:
                    new = self._fetch(kind, ref, current)
                except ModelLoadError as exc:
                    if strict:
                        raise
                    self.errors[kind] = str(exc)
                    log.warning("%s: keeping %s: %s", kind, current.source if current else "no model", exc)
                    continue
                self.errors.pop(kind, None)
                if new is not None:
                    self._loaded = {**self._loaded, kind: new}  # the one atomic swap
                    before = f"{current.source} -> " if current else ""
                    changes[kind] = f"{before}{new.source}"
                    log.info("%s: now serving %s", kind, changes[kind])
        return changes

    def _fetch(self, kind: str, ref: str, current: Loaded | None) -> Loaded | None:
        """The new `Loaded` for `ref`, or None when `current` is still what it names."""
        load, file_name = MODEL_KINDS[kind].load, MODEL_KINDS[kind].file_name
        match = _ALIAS_REF.match(ref)
        if match:
            name, alias = match["name"], match["alias"]
            version = self._alias_version(name, alias)
            number = str(version.version)  # an int from some stores, a str from others
            if current is not None and current.version == number:
                return None
            source = f"models:/{name}/{number}"  # pinned: the alias may move meanwhile
            model = load(source, self.tracking_uri)
            return Loaded(kind, name, number, alias, source, model, _metrics(version.tags, model))
        if not is_model_uri(ref):
            path = Path(ref)
            try:
                file = find_model_file(path, file_name) if path.is_dir() else path
                st = file.stat()
            except (OSError, ModelLoadError):
                raise ModelLoadError(f"{ref}: no such file or directory", not_found=True) from None
            stamp = (st.st_mtime_ns, st.st_size)
            if current is not None and current.stamp == stamp:
                return None
            model = load(ref, self.tracking_uri)
            return Loaded(kind, path.name, None, None, ref, model, _metrics({}, model), stamp)
        if current is not None:
            return None
        model = load(ref, self.tracking_uri)
        return Loaded(kind, ref, None, None, ref, model, _metrics({}, model))

    def _alias_version(self, name: str, alias: str):
        uri = self.tracking_uri or ""
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///").split("?")[0]).is_file():
            raise ModelLoadError(f"models:/{name}@{alias}: the MLflow store {uri} does not exist", not_found=True)
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            return mlflow.MlflowClient(tracking_uri=self.tracking_uri).get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            missing = exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # model, alias
            raise ModelLoadError(f"models:/{name}@{alias}: {first}", not_found=missing) from None
        except Exception as exc:  # network, broken store: one line, the current model stays
            raise ModelLoadError(f"models:/{name}@{alias}: {type(exc).__name__}: {exc}") from None
