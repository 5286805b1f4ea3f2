"""The MLflow model registry: how a detector is packaged, registered and found again.

A registered version is an MLflow pyfunc model whose artifact `detector.pt` is the saved
model (weights, feature config, threshold). `predict` takes a batch of 16 kHz waveforms
and returns per-step probabilities. Aliases: every new version is `challenger`; the
promotion gate (components/register.py) moves `champion`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

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


def log_detector(detector_path: Path) -> mlflow.models.model.ModelInfo:
    """Log the detector as a pyfunc model in the active run, with signature and example."""
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]))
    example = np.zeros((1, 16000), dtype=np.float32)  # one second of silence
    import torch

    with tempfile.TemporaryDirectory() as tmp:  # the artifact keeps its file name: make it DETECTOR_FILE
        staged = Path(tmp) / DETECTOR_FILE
        shutil.copyfile(detector_path, staged)
        return mlflow.pyfunc.log_model(
            name="model", python_model=DetectorModel(), artifacts={"detector": str(staged)},
            signature=signature, input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "librosa", "cs230-mlops"],
        )


def alias_version(client: mlflow.MlflowClient, name: str, alias: str):
    """The model version holding `alias`, or None (also when the model is not registered)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
