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

from components.audio.detection import DetectionConfig
from components.audio.features import LOG_FLOOR
from components.audio.model import TriggerWordModel

STEP_FORMAT = "cs230-trigger-word-step/1"
OPSET = 17
FRONT_END_NODES = ("stft", "mel")  # fp32 always: 8-bit activations cannot hold raw audio's dynamic range
SPARSE_MIN_ZEROS = 0.25  # bit-packing zeros pays off above ~6% zeros; below this share keep it simple


class _Graph:
    """Nodes and initializers under construction, with fresh names."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def const(self, value, name: str | None = None, dtype=np.float32) -> str:
        name = name or self._fresh("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, name: str | None = None, outputs: int = 1, **attrs):
        outs = [self._fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name or outs[0], **attrs))
        return outs if outputs > 1 else outs[0]

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
                                                          self.const([1], dtype=np.int64)),
                                      self.const(np.arange(7, -1, -1), dtype=np.uint8), direction="RIGHT"),
                       self.const(2, dtype=np.uint8))  # packbits is MSB first
        mask = self.op("Slice", self.op("Reshape", bits, self.const([-1], dtype=np.int64)),
                       self.const([0], dtype=np.int64), self.const([nonzero.size], dtype=np.int64))
        position = self.op("Sub", self.op("CumSum", self.op("Cast", mask, to=TensorProto.INT64),
                                          self.const(0, dtype=np.int64)), self.const(1, dtype=np.int64))
        gathered = self.op("Gather", self.const(value.ravel()[nonzero]),
                           self.op("Max", position, self.const(0, dtype=np.int64)))
        dense = self.op("Where", self.op("Cast", mask, to=TensorProto.BOOL), gathered, self.const(0.0))
        return self.op("Reshape", dense, self.const(value.shape, dtype=np.int64))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _front_end(g: _Graph, model: TriggerWordModel, audio: str, audio_ctx: str) -> str:
    """Normalised log-mel of the `conv_stride` new frames [B, stride, n_mels] (+ audio_context_out)."""
    cfg, stride = model.features.cfg, model.model_cfg.conv_stride
    n_new, ctx = cfg.hop_length * stride, model.features.left_context
    buf = g.op("Concat", audio_ctx, audio, axis=1)  # [B, ctx + n_new]
    g.named("audio_context_out", "Slice", buf, g.const([n_new], dtype=np.int64),
            g.const([ctx + n_new], dtype=np.int64), g.const([1], dtype=np.int64))
    # frame j = buf[j * hop : j * hop + win]: the same causal framing as LogMel.frames_from_padded
    i64 = lambda v: g.const(v, dtype=np.int64)  # noqa: E731
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
    x = g.op("Reshape", frames, g.const([0, k * m], dtype=np.int64))  # row k * n_mels + mel
    matrix = weight.transpose(2, 1, 0).reshape(k * m, -1)
    return g.op("Relu", g.op("Add", g.named("conv", "MatMul", x, g.weight(matrix)), g.const(bias)))


def _gru_cell(g: _Graph, model: TriggerWordModel, layer: int, x: str, h: str) -> str:
    """One step of torch.nn.GRU's layer (gates r, z, n; the reset gate scales W_hn h + b_hn)."""
    gru, hidden = model.gru, model.model_cfg.gru_hidden
    w_ih, w_hh = (_numpy(getattr(gru, f"{n}_l{layer}")) for n in ("weight_ih", "weight_hh"))
    b_ih, b_hh = (_numpy(getattr(gru, f"{n}_l{layer}")) for n in ("bias_ih", "bias_hh"))
    sizes = g.const([hidden] * 3, dtype=np.int64)
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
    cfg, mc = model.features.cfg, model.model_cfg
    g, f32 = _Graph(), TensorProto.FLOAT
    ctx_frames = model.conv_left_context
    inputs = [helper.make_tensor_value_info("audio", f32, ["batch", model.samples_per_step]),
              helper.make_tensor_value_info("audio_context", f32, ["batch", model.features.left_context])]
    if ctx_frames:  # kernel == stride needs no frame history: no such state at all
        inputs.append(helper.make_tensor_value_info("frame_context", f32, ["batch", ctx_frames, cfg.n_mels]))
    inputs.append(helper.make_tensor_value_info("hidden", f32, [mc.gru_layers, "batch", mc.gru_hidden]))

    new = _front_end(g, model, "audio", "audio_context")
    frames = new
    if ctx_frames:
        frames = g.op("Concat", "frame_context", new, axis=1)  # [B, kernel, n_mels]
        g.named("frame_context_out", "Slice", frames, g.const([mc.conv_stride], dtype=np.int64),
                g.const([mc.conv_kernel], dtype=np.int64), g.const([1], dtype=np.int64))
    x, states = _conv(g, model, frames), []
    for layer in range(mc.gru_layers):
        h = g.op("Gather", "hidden", g.const(layer, dtype=np.int64), axis=0)
        x = _gru_cell(g, model, layer, x, h)
        states.append(g.op("Unsqueeze", x, g.const([0], dtype=np.int64)))
    g.named("hidden_out", "Concat", *states, axis=0)
    logit = g.op("Add", g.named("head", "MatMul", x, g.const(_numpy(model.head.weight).T)),
                 g.const(_numpy(model.head.bias)))
    g.named("prob", "Reshape", g.op("Sigmoid", logit), g.const([-1], dtype=np.int64))

    outputs = [helper.make_tensor_value_info("prob", f32, ["batch"])]
    for state in inputs[1:]:  # each state output has its input's shape
        out = onnx.ValueInfoProto()
        out.CopyFrom(state)
        out.name = f"{state.name}_out"
        outputs.append(out)
    graph = helper.make_graph(g.nodes, "trigger_word_step", inputs, outputs, g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cs230-mlops")
    proto.ir_version = 8  # onnxruntime >= 1.14 reads it
    detection = {**DetectionConfig().__dict__, **model.metadata.get("detection", {})}  # as saved by evaluate
    set_metadata(proto, {"format": STEP_FORMAT, "sample_rate": str(cfg.sample_rate),
                         "smoothing_steps": str(detection["smoothing_steps"]),
                         "refractory_s": repr(float(detection["refractory_s"])),
                         "samples_per_step": str(model.samples_per_step), "threshold": repr(float(model.threshold)),
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
