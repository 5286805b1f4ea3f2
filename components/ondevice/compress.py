"""Smaller on-device variants of a trigger-word model: int8 weights, magnitude pruning, a distilled student.

* `quantize_int8`: onnxruntime dynamic quantization of an exported step graph. Every MatMul with a
  weight (conv, GRU, head) gets int8 weights and per-call 8-bit activations; the feature front end
  (`onnx_export.FRONT_END_NODES`) stays fp32, since raw audio power spans far more than 8 bits.
* `prune_and_finetune`: zero the smallest-magnitude share of every weight matrix (per layer, so
  no layer is emptied), then fine-tune briefly with the usual training loop, the zeros held by
  torch's pruning masks, and make the zeros permanent.
* `distill`: train a small student on the teacher's per-step probabilities (BCE to soft targets,
  i.e. KL to the teacher up to a constant) with the usual training loop.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch.nn.utils import prune
from torch.utils.data import Dataset

from components.audio.model import TriggerWordModel
from components.audio.training import ClipDataset, TrainResult, train
from components.config import TrainParams
from components.ondevice.onnx_export import FRONT_END_NODES, set_metadata


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def quantize_int8(fp32_path: Path, out_path: Path) -> Path:
    """Dynamic int8 quantization (weights int8 per tensor, activations quantized per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(out_path), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     nodes_to_exclude=list(FRONT_END_NODES), extra_options={"MatMulConstBOnly": True})
    proto = onnx.load(str(out_path))
    set_metadata(proto, {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props})
    set_metadata(proto, {"variant": "int8"})
    onnx.save(proto, str(out_path))
    return Path(out_path)


def _prunable(model: TriggerWordModel) -> list[tuple[torch.nn.Module, str]]:
    """Every weight matrix (biases and batch-norm stay dense: few numbers, large effect)."""
    gru = [(model.gru, f"weight_{kind}_l{layer}") for layer in range(model.model_cfg.gru_layers)
           for kind in ("ih", "hh")]
    return [(model.conv, "weight"), *gru, (model.head, "weight")]


def sparsity(model: TriggerWordModel) -> float:
    """Share of zeros over the prunable weights."""
    weights = [getattr(module, name) for module, name in _prunable(model)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def prune_and_finetune(model: TriggerWordModel, amount: float, train_ds: ClipDataset, val_ds: ClipDataset,
                       cfg: TrainParams, seed: int, on_epoch: Callable[[int, dict], None] | None = None
                       ) -> tuple[TriggerWordModel, TrainResult]:
    """A pruned copy of `model` (eval mode), fine-tuned; `model` itself is left as it was."""
    pruned = add_pruning_masks(copy.deepcopy(model), amount)
    result = train(pruned, train_ds, val_ds, cfg, seed, on_epoch=on_epoch)
    return remove_pruning_masks(pruned).eval(), result


def add_pruning_masks(model: TriggerWordModel, amount: float) -> TriggerWordModel:
    """Mask the smallest-magnitude `amount` of each weight matrix; masked weights get no gradient."""
    for module, name in _prunable(model):
        prune.l1_unstructured(module, name, amount=amount)
    return model


def remove_pruning_masks(model: TriggerWordModel) -> TriggerWordModel:
    """Make the zeros permanent: each weight becomes a plain parameter again (weight_orig * mask)."""
    for module, name in _prunable(model):
        prune.remove(module, name)
    model.gru.flatten_parameters()
    return model


class TeacherTargets(Dataset):
    """A ClipDataset whose labels are the teacher's per-step probabilities (computed once, in batches)."""

    def __init__(self, clips: ClipDataset, teacher: TriggerWordModel, batch_size: int = 32):
        self.clips, self.samples_per_step, self.label_rows = clips, clips.samples_per_step, clips.label_rows
        teacher.eval()
        self._targets: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(clips), batch_size):
                waves = [clips.wave(i) for i in range(start, min(start + batch_size, len(clips)))]
                for length in dict.fromkeys(len(w) for w in waves):  # equal lengths batch together
                    same = [i for i, w in enumerate(waves) if len(w) == length]
                    probs = torch.sigmoid(teacher(torch.from_numpy(np.stack([waves[i] for i in same]))))
                    self._targets += [(start + i, p.clone()) for i, p in zip(same, probs)]
        self._targets = [p for _, p in sorted(self._targets, key=lambda t: t[0])]

    def __len__(self) -> int:
        return len(self.clips)

    def wave(self, i: int):
        return self.clips.wave(i)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.clips.wave(i)), self._targets[i]


def distill(teacher: TriggerWordModel, student: TriggerWordModel, train_ds: ClipDataset, val_ds: ClipDataset,
            cfg: TrainParams, seed: int, on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `student` in place on the teacher's soft outputs; early stopping on the val distillation loss.

    pos_weight should be 1: the teacher's probabilities already carry its class weighting.
    """
    if student.samples_per_step != teacher.samples_per_step:
        raise ValueError("student and teacher must have the same output step")
    student.metadata = {**teacher.metadata, "distilled_from_parameters": parameter_count(teacher)}
    return train(student, TeacherTargets(train_ds, teacher), TeacherTargets(val_ds, teacher), cfg, seed,
                 on_epoch=on_epoch)
