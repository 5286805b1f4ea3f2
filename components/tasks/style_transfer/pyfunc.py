"""The registered fast network as an MLflow pyfunc model (imported only when logging or loading one)."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np


class StyleNetModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: one image uint8 [1, H, W, 3] -> the stylised image uint8 [1, H, W, 3]."""

    def load_context(self, context) -> None:
        from components.style.io import load_fast
        self.net, _ = load_fast(Path(context.artifacts["style_net"]))

    def predict(self, context, model_input, params=None):
        import torch

        from components.style.io import to_tensor, to_uint8
        with torch.inference_mode():
            return to_uint8(self.net(to_tensor(np.asarray(model_input, dtype=np.uint8)[0])))[None]
