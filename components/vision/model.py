"""Day/night image classifier: an MLP (the CS230 notes' 12288-32-1 and deeper), a small CNN, or a
small head (the MLP's hidden layers) on frozen ImageNet EfficientNet-Lite0 features.

Images are uint8 [B, S, S, 3] (RGB, channels last) with label 1 = night, 0 = day. The model does
its own preprocessing (x / 255), so a served model takes images exactly as they are stored.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from components.checkpoint_config import read_checkpoint, rebuilding, strict_from_dict
# LEAKY_SLOPE is shared with the NumPy backend, as are the activations and inits. The init "zeros" is
# the notes' symmetry demo only: every hidden unit computes, and keeps computing, the same function,
# so a layer of n units learns no more than one. Never part of a search space.
from components.vision.numpy_net import LEAKY_SLOPE, sigmoid

if TYPE_CHECKING:
    from components.config import DayNightParams

CHECKPOINT_FORMAT = "cs230-day-night/1"
KINDS = ("mlp", "cnn", "efficientnet_lite0")
PRETRAINED_KINDS = ("efficientnet_lite0",)  # a frozen backbone: its features of fixed images can be cached
_ACTIVATION_MODULES = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
                       "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier's shape, saved in its checkpoint: params.yaml's day_night.model (checked there).

    hidden: the MLP's hidden widths ((32,) is the notes' 12288-32-1; () is logistic regression), or
    the head's over a pretrained backbone. cnn: per cnn_channels entry conv3x3 (same padding) + 2x2
    max pool + activation, then global average pooling and one dense unit. efficientnet_lite0:
    images are resized to backbone_input before the frozen backbone."""

    kind: str
    hidden: tuple[int, ...]
    activation: str
    init: str
    dropout: float  # inverted dropout after each hidden layer (CNN: before the dense head)
    cnn_channels: tuple[int, ...]
    image_size: int  # images are image_size x image_size x 3
    backbone_input: int

    @classmethod
    def from_params(cls, p: DayNightParams, **model_overrides) -> "ClassifierConfig":
        """The model section with `model_overrides` (tuned keys) laid over it: depth x width hidden units."""
        m = {**p.model.model_dump(), **model_overrides}
        return cls(kind=m["kind"], hidden=(m["width"],) * m["depth"], activation=m["activation"], init=m["init"],
                   dropout=m["dropout"], cnn_channels=tuple(m["cnn_channels"]), image_size=p.image_size,
                   backbone_input=m["backbone_input"])

    def __post_init__(self) -> None:
        for name in ("hidden", "cnn_channels"):  # YAML/JSON give lists; keep the config hashable
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {**d, "hidden": list(self.hidden), "cnn_channels": list(self.cnn_channels)}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        # files from before the efficientnet_lite0 kind lack backbone_input: mlp or cnn, which never read it
        return strict_from_dict(cls, {"backbone_input": 64, **d} if d.get("kind") in ("mlp", "cnn") else d)


class DayNightClassifier(nn.Module):
    """forward(images uint8 or float [B, S, S, 3] with values 0..255) -> night logits [B]."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        if cfg.kind not in KINDS:  # a checkpoint's: params are checked by components/config.py
            raise ValueError(f"kind must be one of {KINDS}, got {cfg.kind!r}")
        self.cfg = cfg
        self.threshold = 0.5  # operating point on p_night, set by evaluation; saved with the model
        self.temperature = 1.0  # logit scale from calibration: p_night = sigmoid(logit / temperature)
        self.metadata: dict = {}  # free-form plain values; saved with the model
        act = _ACTIVATION_MODULES[cfg.activation]
        layers: list[nn.Module] = []
        if cfg.kind in PRETRAINED_KINDS:
            from components.vision.backbone import FEATURES, EfficientNetLite0
            self.backbone = EfficientNetLite0(cfg.backbone_input)
        if cfg.kind in ("mlp", *PRETRAINED_KINDS):
            width = cfg.image_size * cfg.image_size * 3 if cfg.kind == "mlp" else FEATURES
            for n in cfg.hidden:
                layers += [nn.Linear(width, n), act(), nn.Dropout(cfg.dropout)]
                width = n
        else:
            width = 3
            for c in cfg.cnn_channels:
                # Pool before the activation: every activation here is non-decreasing, so
                # maxpool(g(z)) == g(maxpool(z)) exactly, and g runs on 4x fewer values (~20% faster).
                layers += [nn.Conv2d(width, c, 3, padding=1), nn.MaxPool2d(2), act()]
                width = c
            # Global average pooling: day vs night is a whole-image property and the head stays tiny.
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = self.cfg.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (s, s, 3):
            raise ValueError(f"expected images [B, {s}, {s}, 3], got {tuple(images.shape)}")
        if self.cfg.kind in PRETRAINED_KINDS:
            return self.head_logits(self.features(images))
        x = images.to(torch.float32) / 255
        if self.cfg.kind == "mlp":
            # Flatten in C order of the channels-last layout: input k = (row * S + col) * 3 + channel,
            # the order numpy_net.images_to_columns uses, so NumPy weights copy across unchanged.
            x = x.reshape(len(x), -1)
        else:
            x = x.permute(0, 3, 1, 2)  # [B, 3, S, S] view for Conv2d (memory stays channels-last)
        return self.head(self.body(x)).squeeze(-1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen backbone's pooled features [B, 1280] of images [B, S, S, 3] (pretrained kinds)."""
        return self.backbone(images.to(torch.float32).permute(0, 3, 1, 2))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Night logits [B] from backbone features (pretrained kinds): what training updates."""
        return self.head(self.body(features)).squeeze(-1)

    def predict_logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw logits (temperature not applied) in eval mode, float64 [N]."""
        images = np.asarray(images)
        was_training = self.training
        self.eval()  # dropout off: predictions are deterministic
        out = []
        try:
            with torch.inference_mode():
                for i in range(0, len(images), batch_size):
                    batch = np.require(images[i: i + batch_size], requirements=["C", "W"])  # torch needs writable
                    out.append(self(torch.from_numpy(batch)).double().numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """p_night = sigmoid(logit / temperature), float64 [N]."""
        return sigmoid(self.predict_logits(images, batch_size) / self.temperature)


def _weight_layers(model: DayNightClassifier) -> list[nn.Module]:
    """The trained layers (a pretrained backbone is not one of them)."""
    return [m for part in (model.body, model.head) for m in part.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def build_classifier(cfg: ClassifierConfig, seed: int) -> DayNightClassifier:
    """A new classifier with cfg.init applied to every weight (biases zero), deterministic in seed."""
    model = DayNightClassifier(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in _weight_layers(model):
            n_prev = layer.weight[0].numel()  # fan-in: inputs feeding one unit
            std = {"he": math.sqrt(2 / n_prev), "xavier": math.sqrt(1 / n_prev),
                   "small_random": 0.01, "zeros": 0.0}[cfg.init]
            layer.weight.normal_(0.0, 1.0, generator=gen).mul_(std)
            layer.bias.zero_()
    return model


def numpy_params(model: DayNightClassifier) -> dict[str, np.ndarray]:
    """An MLP's weights in the notes' column convention: W{l} (n_l, n_{l-1}), b{l} (n_l, 1), float64."""
    if model.cfg.kind != "mlp":
        raise ValueError("only an mlp has numpy_net parameters")
    params = {}
    for l, layer in enumerate(_weight_layers(model), start=1):
        params[f"W{l}"] = layer.weight.detach().double().numpy().copy()
        params[f"b{l}"] = layer.bias.detach().double().numpy().reshape(-1, 1).copy()
    return params


def set_numpy_params(model: DayNightClassifier, params: dict[str, np.ndarray]) -> DayNightClassifier:
    """Copy numpy_net parameters (same architecture) into the MLP in place; returns it."""
    layers = [] if model.cfg.kind != "mlp" else _weight_layers(model)
    if len(params) != 2 * len(layers):
        raise ValueError(f"{len(params) // 2} numpy layers do not fit this model's {len(layers)} dense layers")
    with torch.no_grad():
        for l, layer in enumerate(layers, start=1):
            w, b = np.asarray(params[f"W{l}"]), np.asarray(params[f"b{l}"]).reshape(-1)
            if w.shape != tuple(layer.weight.shape) or b.shape != tuple(layer.bias.shape):
                raise ValueError(f"layer {l}: W {w.shape} / b {b.shape} do not match {tuple(layer.weight.shape)}")
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    return model


def classifier_from_numpy(params: dict[str, np.ndarray], cfg: ClassifierConfig) -> DayNightClassifier:
    """The torch MLP (eval mode) computing what numpy_net computes with these parameters: `cfg`'s
    activation, image size and dropout, the parameters' hidden widths."""
    n_layers = len(params) // 2
    hidden = tuple(int(params[f"W{l}"].shape[0]) for l in range(1, n_layers))
    mlp = dataclasses.replace(cfg, kind="mlp", hidden=hidden)
    return set_numpy_params(DayNightClassifier(mlp), params).eval()


def save_classifier(model: DayNightClassifier, path: str | Path) -> None:
    """One file: format, config, weights, threshold, temperature, metadata (weights_only-loadable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": CHECKPOINT_FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "threshold": float(model.threshold),
        "temperature": float(model.temperature),
        "metadata": dict(model.metadata),
    }, path)


def load_classifier(path: str | Path) -> DayNightClassifier:
    """Rebuild a saved classifier in eval mode; a file that is not one raises a one-line ValueError."""
    ckpt = read_checkpoint(path, CHECKPOINT_FORMAT, "classifier")
    with rebuilding(path, CHECKPOINT_FORMAT):
        model = DayNightClassifier(ClassifierConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        model.threshold, model.temperature = float(ckpt["threshold"]), float(ckpt["temperature"])
        model.metadata = dict(ckpt["metadata"])
    if not (0.0 <= model.threshold <= 1.0 and model.temperature > 0):
        raise ValueError(f"{path}: threshold must be in [0, 1] and temperature > 0")
    return model.eval()
