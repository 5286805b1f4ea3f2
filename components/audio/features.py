"""Causal log-mel features for the trigger-word model.

Frame t covers the `win_length` samples ending at sample (t + 1) * hop_length,
so a frame never looks into the future and a clip of N samples gives exactly
N // hop_length frames. That is what makes the model streamable: the features of
a chunk depend only on the audio already received.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import librosa
import numpy as np
import torch
from torch import nn

from components.checkpoint_config import strict_from_dict

if TYPE_CHECKING:
    from components.config import TriggerWordParams

LOG_FLOOR = 1e-6  # keeps log() finite on digital silence; well below any real noise floor


@dataclass(frozen=True)
class FeatureConfig:
    """The log-mel front end a model was built with, saved in its checkpoint: params.yaml's
    trigger_word.features (and audio.sample_rate), checked there; mean/std are the fitted stats."""

    sample_rate: int
    win_length: int
    hop_length: int
    n_fft: int
    n_mels: int
    fmin: float
    fmax: float
    mean: tuple[float, ...] | None = None  # per-mel-channel stats, set by fit_normalisation
    std: tuple[float, ...] | None = None

    @classmethod
    def from_params(cls, p: TriggerWordParams) -> "FeatureConfig":
        return cls(sample_rate=p.audio.sample_rate, **p.features.model_dump(exclude={"frontend"}))

    def __post_init__(self) -> None:  # the stats: a loaded checkpoint's, or fit_normalisation's
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must both be set or both be None")
        for name in ("mean", "std"):
            stats = getattr(self, name)
            if stats is not None:
                # float32-exact values: the stats live in float32 buffers, and a config read
                # back from a model must compare equal to the one that built it
                stats = tuple(float(v) for v in np.asarray(stats, dtype=np.float32))
                if len(stats) != self.n_mels:
                    raise ValueError(f"{name} has {len(stats)} values, expected n_mels={self.n_mels}")
                object.__setattr__(self, name, stats)
        if self.std is not None and min(self.std) <= 0:
            raise ValueError("std values must be > 0")

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return strict_from_dict(cls, d)


class LogMel(nn.Module):
    """waveform [B, N] float -> normalised log-mel [B, N // hop_length, n_mels]."""

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = dataclasses.replace(cfg, mean=None, std=None)  # stats live in the buffers
        # The Hann window sits at the START of each n_fft frame, so frame t's non-zero
        # part is exactly the win_length samples ending at (t + 1) * hop_length.
        window = torch.zeros(cfg.n_fft)
        window[: cfg.win_length] = torch.hann_window(cfg.win_length, periodic=True)
        self.register_buffer("window", window, persistent=False)
        mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                  fmin=cfg.fmin, fmax=cfg.fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("mean", torch.zeros(cfg.n_mels))
        self.register_buffer("std", torch.ones(cfg.n_mels))
        self.fitted = False
        if cfg.fitted:
            self.set_normalisation(cfg.mean, cfg.std)

    @property
    def left_context(self) -> int:
        """Samples of history a frame needs before its own hop: zeros at the clip start."""
        return self.cfg.win_length - self.cfg.hop_length

    @property
    def config(self) -> FeatureConfig:
        """The full config, including the fitted stats (what gets saved with a model)."""
        if not self.fitted:
            return self.cfg
        return dataclasses.replace(self.cfg, mean=tuple(self.mean.tolist()),
                                   std=tuple(self.std.tolist()))

    def set_normalisation(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.cfg.n_mels or std.numel() != self.cfg.n_mels or (std <= 0).any():
            raise ValueError(f"need {self.cfg.n_mels} means and {self.cfg.n_mels} positive stds")
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.fitted = True

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"expected waveform [B, N], got shape {tuple(wave.shape)}")
        padded = nn.functional.pad(wave, (self.left_context, 0))
        return self.frames_from_padded(padded)

    def frames_from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Features for every complete window of an already left-padded signal [B, L].

        Gives (L - win_length) // hop_length + 1 frames (0 if L < win_length). The
        streamer calls this directly on its buffer, so offline and streaming share code.
        """
        cfg = self.cfg
        n_frames = max(0, (padded.shape[-1] - cfg.win_length) // cfg.hop_length + 1)
        if n_frames == 0:
            return padded.new_zeros(padded.shape[0], 0, cfg.n_mels)
        # The last frame's n_fft buffer runs past its window; those samples are multiplied
        # by the window's zero tail, so pad with zeros rather than wait for future audio.
        used = (n_frames - 1) * cfg.hop_length + cfg.win_length
        padded = nn.functional.pad(padded[:, :used], (0, cfg.n_fft - cfg.win_length))
        spec = torch.stft(padded, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                          win_length=cfg.n_fft, window=self.window, center=False,
                          return_complex=True)  # [B, n_fft // 2 + 1, T]
        power = spec.real.square() + spec.imag.square()
        logmel = torch.log(torch.matmul(self.mel_basis, power) + LOG_FLOOR).transpose(1, 2)
        return (logmel - self.mean) / self.std


def fit_normalisation(waves: Iterable, cfg: FeatureConfig) -> FeatureConfig:
    """Per-mel-channel mean/std of the raw log-mel over `waves` (1-D arrays or tensors).

    Returns `cfg` with the stats filled in. Statistics are accumulated in float64 one
    clip at a time, so the caller can pass a lazy sample of the training set.
    """
    logmel = LogMel(dataclasses.replace(cfg, mean=None, std=None))
    total = np.zeros(cfg.n_mels)
    total_sq = np.zeros(cfg.n_mels)
    count = 0
    with torch.inference_mode():
        for wave in waves:
            wave = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(1, -1)
            feats = logmel(wave)[0].double().numpy()
            total += feats.sum(axis=0)
            total_sq += np.square(feats).sum(axis=0)
            count += feats.shape[0]
    if count < 2:
        raise ValueError("fit_normalisation needs at least two frames of audio")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.maximum(std, 1e-3)  # a constant channel (e.g. digital silence) must not blow up
    return dataclasses.replace(cfg, mean=tuple(mean.tolist()), std=tuple(std.tolist()))
