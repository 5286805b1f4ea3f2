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
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from components.classify import CLASSIFIER_FILE
from components.detect import DETECTOR_FILE

CHAMPION, CHALLENGER = "champion", "challenger"


def registered_name(slug: str) -> str:
    return f"trigger-word-{slug}"


def champion_uri(slug: str) -> str:
    return f"models:/{registered_name(slug)}@{CHAMPION}"


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


def alias_version(client: mlflow.MlflowClient, name: str, alias: str):
    """The model version holding `alias`, or None (also when the model is not registered)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
