"""A TriggerWordModel as one streaming ONNX graph, `step`: 20 ms of new audio + state -> probability + state.

    inputs   audio [B, hop*stride]   audio_context [B, win-hop]   frame_context [B, kernel-stride, n_mels]
             hidden [gru_layers, B, gru_hidden]
    outputs  prob [B]   audio_context_out   frame_context_out   hidden_out   (same shapes as the inputs)

Every state input X has an output X_out; zeros are the state at the start of a stream, exactly as
`TriggerWordStreamer` starts. The graph is the eval-mode model written in plain ops, so a device
needs nothing but onnxruntime:

* STFT as a matmul against a windowed cos/sin basis, then power, the mel bank as a matmul, log,
  normalisation: the same sums as `LogMel` (equal within float rounding).
* The strided conv sees exactly `kernel` frames per step, so it is one matmul with batch-norm folded in.
* The GRU is written out cell by cell (MatMul, Sigmoid, Tanh), not as the ONNX GRU op: onnxruntime's
  dynamic quantization handles MatMul but not GRU, and the GRU holds most of the weights.

Constants that follow from the configuration (the DFT basis, the zeros of the mel bank, frame
indices, the bit-packed zeros of pruned weights) are stored as the few numbers that generate them
and rebuilt by subgraphs that onnxruntime folds once when the session loads. The file then holds
little more than the learned weights, which is what its size should measure.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from components.audio.features import LOG_FLOOR
from components.audio.model import TriggerWordModel

STEP_FORMAT = "cs230-trigger-word-step/1"
OPSET = 17
FRONT_END_NODES = ("stft", "mel")  # fp32 always: 8-bit activations cannot hold raw audio's dynamic range
SPARSE_MIN_ZEROS = 0.25  # a bitmask (1 bit a weight) beats 4-byte zeros above 3%; below 25% it is no pruned layer


class _Graph:
    """Nodes and initializers under construction, with fresh names."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def const(self, value, dtype=np.float32) -> str:
        name = self._fresh("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        outs = [self._fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs if outputs > 1 else outs[0]

    def ints(self, value) -> str:
        return self.const(value, dtype=np.int64)

    def named(self, output: str, op_type: str, *inputs: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output

    def _fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def weight(self, value: np.ndarray) -> str:
        """A float weight; mostly-zero ones (pruned) as a bitmask + the non-zeros, unpacked at load."""
        value = np.asarray(value, dtype=np.float32)
        nonzero = value.ravel() != 0
        if nonzero.all() or not nonzero.any() or 1 - nonzero.mean() < SPARSE_MIN_ZEROS:
            return self.const(value)
        bits = self.op("Mod", self.op("BitShift", self.op("Unsqueeze", self.const(np.packbits(nonzero), dtype=np.uint8),
                                                          self.ints([1])),
                                      self.const(np.arange(7, -1, -1), dtype=np.uint8), direction="RIGHT"),
                       self.const(2, dtype=np.uint8))  # packbits is MSB first
        mask = self.op("Slice", self.op("Reshape", bits, self.ints([-1])), self.ints([0]), self.ints([nonzero.size]))
        # the i-th non-zero sits where the running count of ones reaches i + 1
        position = self.op("Sub", self.op("CumSum", self.op("Cast", mask, to=TensorProto.INT64), self.ints(0)),
                           self.ints(1))
        gathered = self.op("Gather", self.const(value.ravel()[nonzero]), self.op("Max", position, self.ints(0)))
        dense = self.op("Where", self.op("Cast", mask, to=TensorProto.BOOL), gathered, self.const(0.0))
        return self.op("Reshape", dense, self.ints(value.shape))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _front_end(g: _Graph, model: TriggerWordModel, audio: str, audio_ctx: str) -> str:
    """Normalised log-mel of the `conv_stride` new frames [B, stride, n_mels] (+ audio_context_out)."""
    cfg, stride = model.features.cfg, model.model_cfg.conv_stride
    n_new, ctx = cfg.hop_length * stride, model.features.left_context
    buf = g.op("Concat", audio_ctx, audio, axis=1)  # [B, ctx + n_new]
    g.named("audio_context_out", "Slice", buf, g.ints([n_new]), g.ints([ctx + n_new]), g.ints([1]))
    # frame j = buf[j * hop : j * hop + win]: the same causal framing as LogMel.frames_from_padded
    i64 = g.ints
    starts = g.op("Mul", g.op("Range", i64(0), i64(stride), i64(1)), i64(cfg.hop_length))
    index = g.op("Add", g.op("Unsqueeze", starts, i64([1])),
                 g.op("Unsqueeze", g.op("Range", i64(0), i64(cfg.win_length), i64(1)), i64([0])))
    frames = g.op("Gather", buf, index, axis=1)  # [B, stride, win]

    mel_t = _numpy(model.features.mel_basis).T  # [n_fft // 2 + 1, n_mels]
    used = np.flatnonzero(np.abs(mel_t).sum(axis=1) > 0)  # bins outside fmin..fmax weigh nothing
    lo, hi = int(used[0]), int(used[-1]) + 1
    # windowed DFT basis, [win, 2 * bins]: (n * k mod n_fft) keeps the cos/sin argument in [0, 2 pi)
    nk = g.op("Mod", g.op("Mul", g.op("Unsqueeze", g.op("Range", i64(0), i64(cfg.win_length), i64(1)), i64([1])),
                          g.op("Unsqueeze", g.op("Range", i64(lo), i64(hi), i64(1)), i64([0]))), i64(cfg.n_fft))
    angle = g.op("Mul", g.op("Cast", nk, to=TensorProto.FLOAT), g.const(2 * math.pi / cfg.n_fft))
    window = g.const(_numpy(model.features.window)[: cfg.win_length, None])
    basis = g.op("Concat", g.op("Mul", g.op("Cos", angle), window), g.op("Mul", g.op("Sin", angle), window), axis=1)
    spec = g.named("stft", "MatMul", frames, basis)  # [B, stride, 2 * bins]: real parts, then imaginary
    # |X|^2 summed into mel bands in one matmul: the mel bank stacked twice (for re^2 and im^2)
    bank = mel_t[lo:hi].astype(np.float32)
    flat = np.flatnonzero(bank)  # a triangle filter bank is ~95% zeros: store only the triangles
    dense = g.op("ScatterElements", g.op("ConstantOfShape", i64([bank.size])),
                 g.op("Cast", g.const(flat, dtype=np.int32), to=TensorProto.INT64), g.const(bank.ravel()[flat]))
    bank = g.op("Reshape", dense, i64(bank.shape))
    mel = g.named("mel", "MatMul", g.op("Mul", spec, spec), g.op("Concat", bank, bank, axis=0))
    logmel = g.op("Log", g.op("Add", mel, g.const(LOG_FLOOR)))
    return g.op("Div", g.op("Sub", logmel, g.const(_numpy(model.features.mean))), g.const(_numpy(model.features.std)))


def _conv(g: _Graph, model: TriggerWordModel, frames: str) -> str:
    """relu(batchnorm(conv)) of one step's `kernel` frames [B, kernel, n_mels] -> [B, conv_filters]."""
    conv, bn = model.conv, model.norm
    scale = _numpy(bn.weight) / np.sqrt(_numpy(bn.running_var) + bn.eps)
    weight = _numpy(conv.weight) * scale[:, None, None]  # [filters, n_mels, kernel]
    bias = (_numpy(conv.bias) - _numpy(bn.running_mean)) * scale + _numpy(bn.bias)
    k, m = model.model_cfg.conv_kernel, model.features.cfg.n_mels
    x = g.op("Reshape", frames, g.ints([0, k * m]))  # row k * n_mels + mel
    matrix = weight.transpose(2, 1, 0).reshape(k * m, -1)
    return g.op("Relu", g.op("Add", g.named("conv", "MatMul", x, g.weight(matrix)), g.const(bias)))


def _gru_cell(g: _Graph, model: TriggerWordModel, layer: int, x: str, h: str) -> str:
    """One step of torch.nn.GRU's layer (gates r, z, n; the reset gate scales W_hn h + b_hn)."""
    gru, hidden = model.gru, model.model_cfg.gru_hidden
    w_ih, w_hh = (_numpy(getattr(gru, f"{n}_l{layer}")) for n in ("weight_ih", "weight_hh"))
    b_ih, b_hh = (_numpy(getattr(gru, f"{n}_l{layer}")) for n in ("bias_ih", "bias_hh"))
    sizes = g.ints([hidden] * 3)
    gi = g.op("Add", g.named(f"gru{layer}_input", "MatMul", x, g.weight(w_ih.T)), g.const(b_ih))
    gh = g.op("Add", g.named(f"gru{layer}_hidden", "MatMul", h, g.weight(w_hh.T)), g.const(b_hh))
    i_r, i_z, i_n = g.op("Split", gi, sizes, axis=1, outputs=3)
    h_r, h_z, h_n = g.op("Split", gh, sizes, axis=1, outputs=3)
    r = g.op("Sigmoid", g.op("Add", i_r, h_r))
    z = g.op("Sigmoid", g.op("Add", i_z, h_z))
    n = g.op("Tanh", g.op("Add", i_n, g.op("Mul", r, h_n)))
    return g.op("Add", n, g.op("Mul", z, g.op("Sub", h, n)))  # (1 - z) * n + z * h


def step_model(model: TriggerWordModel, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The streaming step graph of `model` (eval mode), checked by onnx.checker.

    Metadata: format, rates, threshold (the model's), smoothing/refractory (the model's saved
    `detection` metadata, else DetectionConfig defaults), parameter count, plus `metadata`.
    """
    if model.training:
        raise ValueError("export needs eval mode: call model.eval() first")
    cfg, mc, g = model.features.cfg, model.model_cfg, _Graph()
    states = {"audio_context": ["batch", model.features.left_context]}
    if model.conv_left_context:  # kernel == stride needs no frame history: no such state at all
        states["frame_context"] = ["batch", model.conv_left_context, cfg.n_mels]
    states["hidden"] = [mc.gru_layers, "batch", mc.gru_hidden]

    frames = _front_end(g, model, "audio", "audio_context")
    if model.conv_left_context:
        frames = g.op("Concat", "frame_context", frames, axis=1)  # [B, kernel, n_mels]
        g.named("frame_context_out", "Slice", frames, g.ints([mc.conv_stride]), g.ints([mc.conv_kernel]), g.ints([1]))
    x, hidden = _conv(g, model, frames), []
    for layer in range(mc.gru_layers):
        x = _gru_cell(g, model, layer, x, g.op("Gather", "hidden", g.ints(layer), axis=0))
        hidden.append(g.op("Unsqueeze", x, g.ints([0])))
    g.named("hidden_out", "Concat", *hidden, axis=0)
    logit = g.op("Add", g.named("head", "MatMul", x, g.const(_numpy(model.head.weight).T)),
                 g.const(_numpy(model.head.bias)))
    g.named("prob", "Reshape", g.op("Sigmoid", logit), g.ints([-1]))

    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("audio", f32, ["batch", model.samples_per_step])]
    inputs += [helper.make_tensor_value_info(name, f32, shape) for name, shape in states.items()]
    outputs = [helper.make_tensor_value_info("prob", f32, ["batch"])]
    outputs += [helper.make_tensor_value_info(f"{name}_out", f32, shape) for name, shape in states.items()]
    graph = helper.make_graph(g.nodes, "trigger_word_step", inputs, outputs, g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cs230-mlops")
    proto.ir_version = 8  # onnxruntime >= 1.14 reads it
    detection = model.detection_config()  # as saved by evaluate (or an override of export's)
    set_metadata(proto, {"format": STEP_FORMAT, "sample_rate": str(cfg.sample_rate),
                         "smoothing_steps": str(detection.smoothing_steps),
                         "refractory_s": repr(float(detection.refractory_s)),
                         "samples_per_step": str(model.samples_per_step), "threshold": repr(float(detection.threshold)),
                         "parameters": str(sum(p.numel() for p in model.parameters())), **(metadata or {})})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    """Set (or replace) string metadata: what the runner needs besides the graph."""
    current = {p.key: p.value for p in proto.metadata_props}
    current.update({k: str(v) for k, v in values.items()})
    del proto.metadata_props[:]
    for key, value in current.items():
        proto.metadata_props.add(key=key, value=value)


def export_step(model: TriggerWordModel, path: Path, metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(step_model(model, metadata), str(path))
    return path
