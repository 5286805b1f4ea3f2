"""A fast style network as an ONNX graph: image [B, 3, H, W] in [0, 1] -> stylized [B, 3, H, W].

Traced by torch's TorchScript exporter with dynamic batch and sides; the sides must be multiples of
4 (the trace keeps no padding: the two stride-2 convolutions need them). Checked against the torch
network with onnxruntime on a fixed input.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from components.style.fast import TransformNet

CHECK_SIDE = 64  # side of the seeded image the ONNX graph is checked on


def export_onnx(net: TransformNet, path: Path) -> dict:
    """Write net (eval mode) to path; {"file", "size_kb", "max_abs_diff"} (ONNX vs torch, CHECK_SIDE px)."""
    import warnings

    import onnxruntime as ort

    net = net.eval()
    x = torch.rand(1, 3, CHECK_SIDE, CHECK_SIDE, generator=torch.Generator().manual_seed(0))
    sides = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's notes on constant folding and shape inference
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, input_names=["image"], output_names=["stylized"],
                          dynamic_axes={"image": sides, "stylized": sides}, dynamo=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(buffer.getvalue())
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(x).numpy()
    got = session.run(None, {"image": x.numpy()})[0]
    return {"file": str(path), "size_kb": round(len(buffer.getvalue()) / 1024, 1),
            "max_abs_diff": float(np.abs(got - expected).max())}
