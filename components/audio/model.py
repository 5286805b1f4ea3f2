"""Trigger-word model: log-mel -> causal Conv1D -> unidirectional GRU -> per-step logit.

Every layer is causal, so the model runs offline on whole clips (`forward`) and
online on audio chunks of any size (`stream()`), with the same outputs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from components.audio.detection import DetectionConfig
from components.audio.features import FeatureConfig, LogMel
from components.checkpoint_config import strict_from_dict

if TYPE_CHECKING:
    from components.config import ModelParams

CHECKPOINT_FORMAT = "cs230-trigger-word/1"
# The smoothing and refractory period of every evaluation before models saved their own (metadata["detection"])
LEGACY_DETECTION = {"smoothing_steps": 5, "refractory_s": 1.0}
MAX_STREAM_PIECE = 10 * 16000  # samples per internal step when a caller streams a long chunk at once


@dataclass(frozen=True)
class ModelConfig:
    """The network's sizes, saved in its checkpoint: params.yaml's trigger_word.model (checked there)."""

    conv_filters: int
    conv_kernel: int
    conv_stride: int
    gru_hidden: int
    gru_layers: int
    dropout: float

    @classmethod
    def from_params(cls, section: ModelParams, **overrides) -> "ModelConfig":
        """The model section (its speech-embedding head aside), `overrides` (tuned keys) laid over it."""
        return cls(**{**section.model_dump(exclude={"head"}), **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return strict_from_dict(cls, d)


class OperatingSettings:
    """The detection settings a trained detector carries (`threshold`, `metadata["detection"]`);
    shared by both front ends' models."""

    threshold: float
    metadata: dict

    def detection_config(self, threshold: float | None = None, smoothing_steps: int | None = None,
                         refractory_s: float | None = None) -> DetectionConfig:
        """The operating settings evaluation chose and saved with this model (`threshold` and
        `metadata["detection"]`), which every consumer (detect, serve, export) uses; an argument that
        is not None overrides that one setting (the consumers' explicit flags). A model saved before
        evaluation recorded smoothing and refractory period gets the ones evaluation then used."""
        saved = {**LEGACY_DETECTION, **self.metadata.get("detection", {}), "threshold": self.threshold}
        given = {"threshold": threshold, "smoothing_steps": smoothing_steps, "refractory_s": refractory_s}
        return DetectionConfig(**{**saved, **{k: v for k, v in given.items() if v is not None}})

    def set_detection_config(self, cfg: DetectionConfig) -> None:
        """Make `cfg` this model's operating settings, saved with it (what evaluation chooses)."""
        self.threshold = float(cfg.threshold)
        self.metadata = {**self.metadata, "detection": {"smoothing_steps": int(cfg.smoothing_steps),
                                                        "refractory_s": float(cfg.refractory_s)}}


class TriggerWordModel(OperatingSettings, nn.Module):
    """forward(wave [B, N]) -> logits [B, N // (hop_length * conv_stride)]."""

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig, threshold: float = 0.5):
        super().__init__()
        self.model_cfg = model_cfg
        self.threshold = float(threshold)  # operating point, set by evaluation; saved with the model
        self.metadata: dict = {}  # free-form plain values (e.g. the trigger word); saved with the model
        self.features = LogMel(feature_cfg)
        c = model_cfg
        self.conv = nn.Conv1d(feature_cfg.n_mels, c.conv_filters, c.conv_kernel, stride=c.conv_stride)
        self.norm = nn.BatchNorm1d(c.conv_filters)  # eval-mode BN is a per-channel affine: streamable
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.conv_filters, c.gru_hidden, c.gru_layers, batch_first=True,
                          dropout=c.dropout if c.gru_layers > 1 else 0.0)
        self.head = nn.Linear(c.gru_hidden, 1)
        nn.init.constant_(self.head.bias, -2.0)  # positives are rare: start at p = sigmoid(-2) ~ 0.12

    @property
    def feature_config(self) -> FeatureConfig:
        return self.features.config

    @property
    def conv_left_context(self) -> int:
        """Frames of history the strided conv needs; zero frames at the clip start."""
        return self.model_cfg.conv_kernel - self.model_cfg.conv_stride

    @property
    def samples_per_step(self) -> int:
        return self.features.cfg.hop_length * self.model_cfg.conv_stride

    @property
    def sample_rate(self) -> int:
        return self.features.cfg.sample_rate

    def probabilities(self, waves: np.ndarray) -> np.ndarray:
        """Per-step probabilities [B, T] of equal-length waves [B, N] (eval mode)."""
        with torch.inference_mode():
            return torch.sigmoid(self(torch.from_numpy(np.ascontiguousarray(waves)))).numpy()

    @property
    def step_seconds(self) -> float:
        return self.samples_per_step / self.features.cfg.sample_rate

    def output_steps(self, n_samples: int) -> int:
        return n_samples // self.samples_per_step

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.features(wave))

    def forward_features(self, logmel: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel [B, T, n_mels] -> logits [B, T // conv_stride].

        The network without the STFT front end (e.g. for an export that computes features apart).
        """
        # Left padding only: output step u sees frames up to (u + 1) * stride - 1, i.e.
        # audio up to sample (u + 1) * samples_per_step, never beyond.
        feats = nn.functional.pad(logmel.transpose(1, 2), (self.conv_left_context, 0))
        logits, _ = self._from_conv_input(feats, None)
        return logits

    def _from_conv_input(self, feats: torch.Tensor, hidden: torch.Tensor | None):
        """[B, n_mels, T'] (already left-padded) -> (logits [B, T_out], GRU hidden)."""
        x = self.drop(torch.relu(self.norm(self.conv(feats))))
        x, hidden = self.gru(x.transpose(1, 2), hidden)
        return self.head(self.drop(x)).squeeze(-1), hidden

    def stream(self) -> "TriggerWordStreamer":
        return TriggerWordStreamer(self)

    def size_bytes(self) -> int:
        """Bytes of fp32 parameters (the weights a device must hold)."""
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def checkpoint(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "feature_config": self.feature_config.to_dict(),
            "model_config": self.model_cfg.to_dict(),
            "threshold": float(self.threshold),
            "metadata": dict(self.metadata),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }


class TriggerWordStreamer:
    """Feeds audio chunks of any size; returns probabilities for each completed output step.

    State carried across chunks: raw samples not yet framed (the STFT's left context),
    the conv's left-context frames, frames not yet consumed by the conv, and the GRU
    hidden state. The concatenated outputs equal sigmoid(model(whole_clip)) in eval mode.
    """

    def __init__(self, model: TriggerWordModel):
        if model.training:
            raise RuntimeError("streaming needs eval mode: call model.eval() first")
        self.model = model
        self.reset()

    def reset(self) -> None:
        m = self.model
        self._samples = np.zeros(m.features.left_context, dtype=np.float32)  # clip starts after zeros
        self._frames = torch.zeros(1, m.features.cfg.n_mels, m.conv_left_context)
        self._hidden = None
        self.steps_emitted = 0

    def process(self, chunk) -> np.ndarray:
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.detach().cpu().numpy()
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 1:
            raise ValueError(f"expected a 1-D chunk of samples, got shape {chunk.shape}")
        if len(chunk) > MAX_STREAM_PIECE:  # bound the STFT's memory for very long chunks
            pieces = [self.process(chunk[i: i + MAX_STREAM_PIECE])
                      for i in range(0, len(chunk), MAX_STREAM_PIECE)]
            return np.concatenate(pieces)
        m, cfg = self.model, self.model.features.cfg
        self._samples = np.concatenate([self._samples, chunk])
        n_frames = (len(self._samples) - cfg.win_length) // cfg.hop_length + 1
        if n_frames <= 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            new = m.features.frames_from_padded(torch.from_numpy(self._samples)[None])
            self._samples = self._samples[n_frames * cfg.hop_length:]
            self._frames = torch.cat([self._frames, new.transpose(1, 2)], dim=2)
            stride, ctx = m.model_cfg.conv_stride, m.conv_left_context
            n_steps = (self._frames.shape[2] - ctx) // stride
            if n_steps == 0:
                return np.zeros(0, dtype=np.float32)
            logits, self._hidden = m._from_conv_input(self._frames[:, :, : ctx + n_steps * stride],
                                                      self._hidden)
            self._frames = self._frames[:, :, n_steps * stride:]
        self.steps_emitted += n_steps
        return torch.sigmoid(logits[0]).numpy()


def save_model(model, path: str | Path) -> None:
    """One file holding weights, configs, threshold and metadata (either front end's model).

    Everything is tensors and plain Python values, so `torch.load(weights_only=True)` reads it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.checkpoint(), path)


def load_model(path: str | Path):
    """Rebuild a saved model in eval mode, with the features it was trained with: a log-mel
    TriggerWordModel or a speech-embedding EmbeddingWordModel, whichever the file holds."""
    from components.audio import embedding_model

    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and ckpt.get("format") == embedding_model.CHECKPOINT_FORMAT:
        return embedding_model.from_checkpoint(ckpt)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} or {embedding_model.CHECKPOINT_FORMAT} checkpoint")
    model = TriggerWordModel(FeatureConfig.from_dict(ckpt["feature_config"]),
                             ModelConfig.from_dict(ckpt["model_config"]),
                             threshold=ckpt["threshold"])
    model.load_state_dict(ckpt["state_dict"])
    model.metadata = dict(ckpt.get("metadata", {}))
    return model.eval()
