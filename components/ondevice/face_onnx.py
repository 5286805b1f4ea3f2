"""A CNN face encoder as ONNX: float chips [B, 3, s, s] in 0..1 -> unit embeddings [B, 128].

    export_encoder(net, "fp32.onnx")                       the eval-mode network, batch-norm folded
    quantize_encoder("fp32.onnx", "int8.onnx", inputs)     static int8 (QDQ, per-channel weights)
    OnnxEncoder("int8.onnx").embed_inputs(x)               onnxruntime alone, one thread by default

The graph is what `FaceEncoder.forward` computes for kind "cnn"; the chip -> tensor step
(`FaceEncoder.inputs`: resize to s, scale to 0..1, channels first) stays outside, so a device
feeds it its own aligned chips. The threshold and p_same calibration travel as metadata.
Only the CNN kind exports: the dlib-head kind's backbone is dlib's ResNet, a C++ model with no
ONNX form (`NotExportable`).

Int8 is static: activation ranges are calibrated on real chips (`inputs`) and every Conv and
Gemm runs as int8 (QDQ). onnxruntime's dynamic quantization turns convolutions into ConvInteger,
which was measured 8x slower than fp32 on one core (1.7 vs 0.22 ms per face, width 16, depth 4).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

FORMAT = "cs230-face-encoder-onnx/1"
OPSET = 17


class NotExportable(ValueError):
    """The encoder has no ONNX form; `str()` says why, in one line."""


def export_encoder(net, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `net` (a FaceEncoder of kind cnn) as ONNX with a dynamic batch; checked by onnx."""
    import torch

    if net.cfg.kind != "cnn":
        raise NotExportable(f"a {net.cfg.kind} encoder runs dlib's ResNet backbone (C++, no ONNX form); only the "
                            "cnn kind exports (train one with --set face.model.kind=cnn)")
    net = net.eval()
    size = net.cfg.image_size
    with warnings.catch_warnings():  # torch's notice that the TorchScript exporter is the older one
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["chips"], output_names=["embedding"],
                          dynamic_axes={"chips": {0: "batch"}, "embedding": {0: "batch"}})
    proto = onnx.load(str(path))
    intercept, slope = net.calibration
    meta = {"format": FORMAT, "image_size": str(size), "threshold": repr(float(net.threshold)),
            "calibration_intercept": repr(float(intercept)), "calibration_slope": repr(float(slope)),
            "parameters": str(sum(p.numel() for p in net.parameters())), **(metadata or {})}
    _set_metadata(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return Path(path)


class _Batches:
    """onnxruntime's CalibrationDataReader over an array of inputs."""

    def __init__(self, inputs: np.ndarray, batch: int = 32):
        self._it = iter([{"chips": inputs[i: i + batch]} for i in range(0, len(inputs), batch)])

    def get_next(self):
        return next(self._it, None)


def quantize_encoder(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> Path:
    """Static int8 of an exported encoder, activation ranges from `calibration` [N, 3, s, s]."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    reader = type("Reader", (_Batches, CalibrationDataReader), {})(np.ascontiguousarray(calibration, np.float32))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to run its pre-processing: the graph is already folded
    try:
        quantize_static(str(fp32_path), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    finally:
        root.setLevel(level)
    proto = onnx.load(str(out_path))
    _set_metadata(proto, {**{p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}, "variant": "int8"})
    onnx.save(proto, str(out_path))
    return Path(out_path)


def _set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    current = {p.key: p.value for p in proto.metadata_props}
    current.update(values)
    del proto.metadata_props[:]
    for key, value in current.items():
        proto.metadata_props.add(key=key, value=value)


class OnnxEncoder:
    """An exported encoder in onnxruntime (one thread by default: the device case)."""

    def __init__(self, path: str | Path, threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} model (format {meta.get('format')!r})")
        self.threshold, self.image_size = float(meta["threshold"]), int(meta["image_size"])

    def embed_inputs(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        """Embeddings float32 [N, 128] of inputs float32 [N, 3, s, s] (FaceEncoder.inputs)."""
        out = [self.session.run(None, {"chips": np.ascontiguousarray(x[i: i + batch], np.float32)})[0]
               for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)
