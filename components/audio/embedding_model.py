"""Trigger-word head over the frozen speech embedding (components/audio/embedding.py).

`forward(embeddings [B, T, 96]) -> logits [B, T]`, one logit per 80 ms embedding step, causal:
- "mlp" (the issue's prototype, openWakeWord's shape): the last `context_steps` embeddings,
  flattened, through `layers` Linear + LayerNorm + ReLU layers of `hidden` units;
- "gru": a unidirectional GRU stack over the embeddings.

Training and tuning run on cached embeddings (a pure function of the audio); every consumer
feeds audio through `stream()`, which carries the front end's state and the head's (the last
context_steps - 1 embeddings, or the GRU's hidden state), so streamed equals whole-clip output.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from components.audio import embedding as emb
from components.checkpoint_config import strict_from_dict
from components.audio.model import OperatingSettings

if TYPE_CHECKING:
    from components.config import ModelParams

CHECKPOINT_FORMAT = "cs230-trigger-word-embedding/1"
HEAD_KINDS = ("mlp", "gru")


@dataclass(frozen=True)
class HeadConfig:
    """The head's shape, saved in its checkpoint: params.yaml's trigger_word.model.head with the
    model's dropout (checked there)."""

    kind: str
    context_steps: int
    hidden: int
    layers: int
    dropout: float

    @classmethod
    def from_params(cls, model: ModelParams, **overrides) -> "HeadConfig":
        return cls(**{**model.head.model_dump(), "dropout": model.dropout, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class EmbeddingWordModel(OperatingSettings, nn.Module):
    samples_per_step = emb.STEP_SAMPLES
    step_seconds = emb.STEP_SECONDS
    sample_rate = emb.SAMPLE_RATE

    def __init__(self, cfg: HeadConfig, threshold: float = 0.5):
        super().__init__()
        if cfg.kind not in HEAD_KINDS:  # a checkpoint's: params are checked by components/config.py
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {cfg.kind!r}")
        self.cfg = cfg
        self.threshold = float(threshold)
        self.metadata: dict = {}
        if cfg.kind == "mlp":
            sizes = [cfg.context_steps * emb.EMB_DIM] + [cfg.hidden] * cfg.layers
            layers: list[nn.Module] = []
            for a, b in zip(sizes, sizes[1:]):
                layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU(), nn.Dropout(cfg.dropout)]
            self.body = nn.Sequential(*layers)
        else:
            self.body = nn.GRU(emb.EMB_DIM, cfg.hidden, cfg.layers, batch_first=True,
                               dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden, 1)
        nn.init.constant_(self.head.bias, -2.0)  # positives are rare
        self.front = None  # the ONNX front end, opened on first use (not a torch module)

    def output_steps(self, n_samples: int) -> int:
        return n_samples // emb.STEP_SAMPLES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, T, 96] (zeros before the clip for the MLP's context) -> logits [B, T]."""
        logits, _ = self._run(x, None)
        return logits

    def _run(self, x: torch.Tensor, state):
        """(logits, state): state is the MLP's last context_steps - 1 inputs or the GRU hidden."""
        if self.cfg.kind == "gru":
            out, state = self.body(x, state)
            return self.head(out).squeeze(-1), state
        ctx = self.cfg.context_steps - 1
        if state is None:
            state = x.new_zeros(x.shape[0], ctx, x.shape[2])
        full = torch.cat([state, x], dim=1)
        windows = full.unfold(1, ctx + 1, 1).transpose(2, 3).flatten(2)  # [B, T, context*96]
        return self.head(self.body(windows)).squeeze(-1), full[:, full.shape[1] - ctx:]

    def probabilities(self, waves: np.ndarray) -> np.ndarray:
        """Per-step probabilities [B, T] of equal-length waves [B, N] (eval mode), via the front end."""
        return np.stack([self.stream().process(w) for w in waves])

    def front_end(self) -> emb.SpeechEmbedding:
        if self.front is None:
            self.front = emb.SpeechEmbedding()
        return self.front

    def stream(self) -> "EmbeddingWordStreamer":
        return EmbeddingWordStreamer(self)

    def size_bytes(self) -> int:
        """fp32 head weights plus the two ONNX front-end files."""
        return sum(p.numel() * p.element_size() for p in self.parameters()) + emb.front_end_bytes()

    def checkpoint(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "head_config": self.cfg.to_dict(),
                "threshold": float(self.threshold), "metadata": dict(self.metadata),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}


class EmbeddingWordStreamer:
    """Audio chunks of any size -> probabilities of each completed 80 ms step (eval mode)."""

    def __init__(self, model: EmbeddingWordModel):
        if model.training:
            raise RuntimeError("streaming needs eval mode: call model.eval() first")
        self.model = model
        self._front = model.front_end().stream()
        self._state = None
        self.steps_emitted = 0

    def process(self, chunk) -> np.ndarray:
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.detach().cpu().numpy()
        x = self._front.process(chunk)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            logits, self._state = self.model._run(torch.from_numpy(x)[None], self._state)
        self.steps_emitted += len(x)
        return torch.sigmoid(logits[0]).numpy()


def from_checkpoint(ckpt: dict) -> EmbeddingWordModel:
    model = EmbeddingWordModel(strict_from_dict(HeadConfig, ckpt["head_config"]), threshold=ckpt["threshold"])
    model.load_state_dict(ckpt["state_dict"])
    model.metadata = dict(ckpt.get("metadata", {}))
    return model.eval()
