"""Training loop for the day/night classifier: BCE, mini-batches, early stopping, two backends.

backend "torch" trains any DayNightClassifier with autograd; backend "numpy" trains an MLP with the
notes' hand-written equations (numpy_net) and copies the best weights back into the torch model, so
either way the result is saved, evaluated and served as the same torch model. Both backends optimise
the same objective with the same update rules, see every epoch in the same shuffled order, and differ
only in dropout masks and float rounding (and momentum's first step, see _torch_optimizer).

Photometric augmentation (components/vision/augment.py), when configured, redraws every batch of
every epoch. A pretrained (frozen) backbone trained without augmentation computes the features of
the fixed train and val images once and trains only the head on them; with augmentation every
batch goes through the backbone, which costs ~2.5 ms an image on 2 cores.

Domain code only: `fit` reports each epoch through `on_epoch` and prints nothing.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from components.errors import check_safety_stop
from components.vision import numpy_net
from components.config import DayNightTrain
from components.vision.augment import augment
from components.vision.model import PRETRAINED_KINDS, DayNightClassifier, numpy_params, set_numpy_params

OPTIMIZERS = numpy_net.OPTIMIZERS
BACKENDS = ("torch", "numpy")
EVAL_BATCH = 500  # images per inference batch: ~25 MB of float32 at 64x64


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_loss, val_accuracy, lr, epoch_s
    best_epoch: int = 0  # 1-based; the model holds this epoch's weights (0: none beat the initial ones)
    stop_reason: str = "max_epochs"  # "max_epochs" | "early_stopping"
    seconds: float = 0.0
    threads: int = 0  # torch and BLAS threads it ran with: the result is reproducible for this count
    best_val_loss: float = math.inf


def bce_from_logits(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy, the same quantity as nn.BCEWithLogitsLoss, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.logaddexp(0, z) - np.asarray(y, dtype=np.float64) * z))


def _torch_optimizer(model: nn.Module, cfg: DayNightTrain) -> torch.optim.Optimizer:
    # Biases get no L2, as in the notes' cost.
    groups = [{"params": [p for n, p in model.named_parameters() if not n.endswith("bias")],
               "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n.endswith("bias")], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr)
    if cfg.optimizer == "momentum":
        # dampening = momentum gives the notes' v = 0.9 v + 0.1 dW, so lr means the same as in numpy_net
        # (torch's plain form v = 0.9 v + dW takes 10x larger steps). Only step 1 differs: torch starts v at dW.
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=numpy_net.BETA1, dampening=numpy_net.BETA1)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=numpy_net.BETA2, eps=numpy_net.EPSILON)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(numpy_net.BETA1, numpy_net.BETA2), eps=numpy_net.EPSILON)


def _batch(x: np.ndarray, idx: np.ndarray, rng: np.random.Generator, cfg: DayNightTrain) -> np.ndarray:
    return augment(x[idx], rng, cfg.augment) if cfg.augment.enabled else x[idx]


class _HeadOnly(nn.Module):
    """A pretrained kind's head, trained on cached backbone features [N, 1280] instead of images."""

    def __init__(self, model: DayNightClassifier):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head_logits(features)

    def predict_logits(self, features: np.ndarray, batch_size: int) -> np.ndarray:
        self.eval()
        with torch.inference_mode():
            return self(torch.from_numpy(np.ascontiguousarray(features))).double().numpy()


def backbone_features(model: DayNightClassifier, images: np.ndarray) -> np.ndarray:
    """float32 [N, 1280] frozen features of uint8 images, in inference batches."""
    with torch.inference_mode():
        return np.concatenate([model.features(torch.from_numpy(np.require(images[i:i + EVAL_BATCH], requirements=["C", "W"])))
                               .numpy() for i in range(0, len(images), EVAL_BATCH)])


class _TorchBackend:
    def __init__(self, model: nn.Module, cfg: DayNightTrain, seed: int):
        self.model, self.cfg = model, cfg
        self.opt = _torch_optimizer(model, cfg)
        self.loss_fn = nn.BCEWithLogitsLoss()
        torch.manual_seed(seed)  # dropout masks
        self.rng = np.random.default_rng([seed, 2])  # augmentation

    def train_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray) -> float:
        self.model.train()
        total = 0.0
        for i in range(0, len(order), self.cfg.batch_size):
            idx = order[i: i + self.cfg.batch_size]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(torch.from_numpy(_batch(x, idx, self.rng, self.cfg))), torch.from_numpy(y[idx]))
            loss.backward()
            self.opt.step()
            total += loss.item() * len(idx)
        return total / len(order)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_logits(x, EVAL_BATCH)

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def snapshot(self):
        return copy.deepcopy(self.model.state_dict())

    def finish(self, best) -> None:
        self.model.load_state_dict(best)


class _NumpyBackend:
    """numpy_net in float32 (float64 is only needed for gradient checking)."""

    def __init__(self, model: DayNightClassifier, cfg: DayNightTrain, seed: int):
        self.model, self.cfg = model, cfg
        self.params = {k: v.astype(np.float32) for k, v in numpy_params(model).items()}  # start from its init
        self.opt = numpy_net.Optimizer(cfg.optimizer, cfg.lr, self.params)
        self.keep_prob = 1.0 - model.cfg.dropout
        self.rng = np.random.default_rng([seed, 1])  # dropout masks
        self.augment_rng = np.random.default_rng([seed, 2])

    def train_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray) -> float:
        act, total = self.model.cfg.activation, 0.0
        for i in range(0, len(order), self.cfg.batch_size):
            idx = order[i: i + self.cfg.batch_size]
            X, Y = numpy_net.images_to_columns(_batch(x, idx, self.augment_rng, self.cfg)), y[idx].reshape(1, -1)
            AL, caches = numpy_net.forward(X, self.params, act, self.keep_prob, self.rng)
            total += numpy_net.cost(caches[-1].Z, Y) * len(idx)  # reported loss: BCE only, as torch's
            grads = numpy_net.backward(AL, Y, caches, self.params, act,
                                       lambd=self.cfg.weight_decay * len(idx), keep_prob=self.keep_prob)
            self.opt.step(self.params, grads)
        return total / len(order)

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = [numpy_net.forward(numpy_net.images_to_columns(x[i: i + EVAL_BATCH]), self.params,
                                 self.model.cfg.activation)[1][-1].Z.ravel()
               for i in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(out).astype(np.float64)

    def set_lr(self, lr: float) -> None:
        self.opt.lr = lr

    def snapshot(self):
        return {k: v.copy() for k, v in self.params.items()}

    def finish(self, best) -> None:
        set_numpy_params(self.model, {k: v.astype(np.float32) for k, v in best.items()})


def _checked(model: DayNightClassifier, x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    s = model.cfg.image_size
    if x.ndim != 4 or x.shape[1:] != (s, s, 3) or len(x) == 0:
        raise ValueError(f"{name} images must be a non-empty [N, {s}, {s}, 3] array, got {x.shape}")
    if y.shape != (len(x),) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} labels must be [N] = [{len(x)}] of 0 (day) / 1 (night), got shape {y.shape}")
    return x, y.astype(np.float32)  # images stay uint8 in memory; batches are converted as they are used


def fit(model: DayNightClassifier, train_x, train_y, val_x, val_y, cfg: DayNightTrain, *, seed: int, backend: str,
        on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `model` in place; it ends in eval mode holding the epoch with the lowest val loss.

    `cfg` is params.yaml's day_night.train with its threads resolved (>= 1: torch's and BLAS's
    threads, restored afterwards); `seed` (day_night.seed) drives shuffling, dropout masks and
    augmentation; `backend` is "torch" or "numpy" (the MLP only).

    Deterministic for a given seed, initial model and thread count: it stops only after max_epochs or
    `patience` epochs without a better val loss, never on time (past `cfg.safety_minutes` it raises
    SafetyStop instead). `on_epoch(epoch, metrics)` is
    called after each epoch with that epoch's history entry. Losses are mean BCE without the L2 term.
    """
    start = time.perf_counter()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy" and model.cfg.kind != "mlp":
        raise ValueError(f"backend numpy trains only kind mlp, not {model.cfg.kind!r}")
    train_x, train_y = _checked(model, train_x, train_y, "train")
    val_x, val_y = _checked(model, val_x, val_y, "val")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with threadpool_limits(limits=cfg.threads):
            cached = model.cfg.kind in PRETRAINED_KINDS and not cfg.augment.enabled
            if cached:  # the frozen backbone sees each fixed image once
                train_x, val_x = backbone_features(model, train_x), backbone_features(model, val_x)
            trainer = _TorchBackend(_HeadOnly(model), cfg, seed) if cached else \
                (_TorchBackend if backend == "torch" else _NumpyBackend)(model, cfg, seed)
            shuffle = np.random.default_rng(seed)
            result, best, stale = TrainResult(threads=cfg.threads), trainer.snapshot(), 0
            for epoch in range(1, cfg.max_epochs + 1):
                t0 = time.perf_counter()
                lr = cfg.lr / (1 + cfg.lr_decay * (epoch - 1))
                trainer.set_lr(lr)
                train_loss = trainer.train_epoch(train_x, train_y, shuffle.permutation(len(train_x)))
                val_logits = trainer.logits(val_x)
                metrics = {"train_loss": train_loss, "val_loss": bce_from_logits(val_logits, val_y),
                           "val_accuracy": float(np.mean((val_logits >= 0) == (val_y == 1))),
                           "lr": lr, "epoch_s": time.perf_counter() - t0}
                result.history.append(metrics)
                if metrics["val_loss"] < result.best_val_loss:
                    result.best_val_loss, result.best_epoch, stale = metrics["val_loss"], epoch, 0
                    best = trainer.snapshot()
                else:
                    stale += 1
                if on_epoch is not None:
                    on_epoch(epoch, metrics)
                check_safety_stop(cfg.safety_minutes, start, epoch)
                if stale >= cfg.patience:
                    result.stop_reason = "early_stopping"
                    break
            trainer.finish(best)
    finally:
        torch.set_num_threads(previous_threads)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
