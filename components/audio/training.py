"""Training loop for the trigger-word model: per-step weighted BCE, AdamW, early stopping.

Domain code only: `train` reports each epoch through the `on_epoch` callback and the
caller decides where the figures go (console, MLflow, Ray Tune).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from components.audio.features import fit_normalisation
from components.audio.model import TriggerWordModel
from components.config import TrainParams
from components.errors import check_safety_stop

PLATEAU_PATIENCE = 1  # lr_schedule plateau: epochs without a better val loss before the LR halves
GRAD_CLIP = 5.0  # global-norm clip: guards the GRU against rare exploding steps
NORM_CLIPS = 200  # training clips sampled to fit the log-mel normalisation
EVAL_BATCH = 64


class ClipDataset(Dataset):
    """(waveform float32 [N], labels float32 [T_out]) for the given clip ids of a generated dataset.

    Audio is read from disk per item and labels come from a memory-mapped labels.npy,
    so memory use does not grow with the dataset. Files without a label row
    (label_row == -1, the negative-only stream, any length) get all-zero labels,
    one per `samples_per_step` samples.
    """

    def __init__(self, dataset_dir: str | Path, clip_ids: list[str], sample_rate: int = 16000,
                 samples_per_step: int = 320):
        self.root = Path(dataset_dir)
        self.sample_rate = sample_rate
        self.samples_per_step = samples_per_step
        with open(self.root / "manifest.csv", newline="") as f:
            rows = {r["clip_id"]: r for r in csv.DictReader(f)}
        missing = [c for c in clip_ids if c not in rows]
        if missing:
            raise KeyError(f"{len(missing)} clip ids not in {self.root / 'manifest.csv'}, e.g. {missing[:3]}")
        self.clip_ids = list(clip_ids)
        self.files = [self.root / rows[c]["file"] for c in self.clip_ids]
        self.label_rows = [int(rows[c]["label_row"]) for c in self.clip_ids]
        self._labels = None  # opened lazily: a memmap must not be pickled into DataLoader workers

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getstate__(self):
        return {**self.__dict__, "_labels": None}

    def wave(self, i: int) -> np.ndarray:
        audio, sr = sf.read(self.files[i], dtype="float32", always_2d=True)
        if sr != self.sample_rate:
            raise ValueError(f"{self.files[i]}: {sr} Hz, expected {self.sample_rate} Hz")
        return audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]

    def labels(self, i: int, n_samples: int) -> np.ndarray:
        if self.label_rows[i] < 0:
            return np.zeros(n_samples // self.samples_per_step, dtype=np.float32)
        if self._labels is None:
            self._labels = np.load(self.root / "labels.npy", mmap_mode="r")
        return self._labels[self.label_rows[i]].astype(np.float32)

    def __getitem__(self, i: int):
        wave = self.wave(i)
        return torch.from_numpy(wave), torch.from_numpy(self.labels(i, len(wave)))


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one metrics dict per epoch
    best_epoch: int = 0  # 1-based; the model holds this epoch's weights
    best_val_loss: float = math.inf
    stop_reason: str = "max_epochs"  # "max_epochs" | "early_stopping"
    seconds: float = 0.0  # wall clock, normalisation fit included
    threads: int = 0  # torch intra-op threads it ran with: the result is reproducible for this count


def frame_metrics(probs: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict:
    """Frame-level precision / recall / F1 over all steps (counts summed, not averaged per clip)."""
    pred, truth = probs >= threshold, labels >= 0.5
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def evaluate(model: TriggerWordModel, ds: Dataset, loss_fn: nn.Module, workers: int = 0) -> dict:
    """Mean per-step loss under `loss_fn`, the unweighted BCE ("bce", what tune ranks trials by:
    loss_fn's pos_weight is searched) and frame metrics of `model` (eval mode) on `ds`, in one pass."""
    model.eval()
    loader = DataLoader(ds, batch_size=EVAL_BATCH, num_workers=workers)
    plain_bce = nn.BCEWithLogitsLoss()
    total, bce, n, probs, labels = 0.0, 0.0, 0, [], []
    with torch.inference_mode():
        for wave, y in loader:
            logits = model(wave)
            total += float(loss_fn(logits, y)) * len(y)
            bce += float(plain_bce(logits, y)) * len(y)
            n += len(y)
            probs.append(torch.sigmoid(logits))
            labels.append(y)
    metrics = frame_metrics(torch.cat(probs), torch.cat(labels))
    return {"loss": total / max(n, 1), "bce": bce / max(n, 1), **metrics}


def _scheduler(opt, cfg: TrainParams, steps_per_epoch: int):
    """Returns (scheduler, per_batch): per_batch schedulers step every batch, others per epoch."""
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.max_epochs * steps_per_epoch, pct_start=0.2), True
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs * steps_per_epoch), True
    if cfg.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=PLATEAU_PATIENCE), False
    return None, False


def _fit_features(model: TriggerWordModel, train_ds: ClipDataset, seed: int) -> None:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(train_ds), size=min(NORM_CLIPS, len(train_ds)), replace=False)
    fitted = fit_normalisation((train_ds.wave(int(i)) for i in sorted(idx)), model.features.cfg)
    model.features.set_normalisation(fitted.mean, fitted.std)


def _check_alignment(model: TriggerWordModel, train_ds: ClipDataset) -> None:
    if getattr(train_ds, "samples_per_step", model.samples_per_step) != model.samples_per_step:
        raise ValueError(f"dataset steps are {train_ds.samples_per_step} samples, the model's "
                         f"{model.samples_per_step}")
    labelled = [i for i, row in enumerate(getattr(train_ds, "label_rows", [0])) if row >= 0]
    wave, labels = train_ds[labelled[0] if labelled else 0]
    if model.output_steps(len(wave)) != len(labels):
        raise ValueError(f"labels have {len(labels)} steps but the model gives "
                         f"{model.output_steps(len(wave))} for {len(wave)} samples: the dataset was "
                         "generated with a different hop_length/conv_stride")


@contextlib.contextmanager
def _deterministic_algorithms():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _train_epoch(model, loader, loss_fn, opt, batch_sched, grad_clip) -> tuple[float, int]:
    """One pass over `loader`; returns (mean per-step training loss, clips seen)."""
    model.train()
    total, n = 0.0, 0
    for wave, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(wave), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        if batch_sched is not None:
            batch_sched.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / n, n


def train(model: TriggerWordModel, train_ds: ClipDataset, val_ds: ClipDataset, cfg: TrainParams, seed: int,
          on_epoch: Callable[[int, dict], None] | None = None, workers: int = 0) -> TrainResult:
    """Fit feature normalisation on `train_ds` (log-mel models), then train `model` in place.

    `cfg` is params.yaml's trigger_word.train (cfg.threads 0 leaves the process's torch threads);
    `seed` (trigger_word.seed) draws the normalisation clips, batch order and dropout masks.
    `workers` DataLoader processes, 0 or 1: audio decoding is cheap next to the GRU on 2 cores.

    `train_ds` yields (model input, per-step labels): waveforms for a log-mel TriggerWordModel,
    cached embeddings (embedding_cache.EmbeddingDataset) for an EmbeddingWordModel.

    Deterministic for a given seed, model initialisation and thread count: it stops only
    after max_epochs or `patience` epochs without a better val loss, never on time (past
    `cfg.safety_minutes` it raises SafetyStop instead). The model ends in eval mode holding
    the weights of the epoch with the lowest val loss.
    `on_epoch(epoch, metrics)` is called after each epoch; without it a line is printed.
    """
    start = time.perf_counter()
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"need non-empty train and val sets, got {len(train_ds)} and {len(val_ds)} clips")
    if workers not in (0, 1):
        raise ValueError(f"workers must be 0 or 1, got {workers}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with _deterministic_algorithms():
        torch.manual_seed(seed)  # dropout masks
        if isinstance(model, TriggerWordModel):  # the embedding heads train on cached, fixed features
            _check_alignment(model, train_ds)
            _fit_features(model, train_ds, seed)
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed), num_workers=workers)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(cfg.pos_weight))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched, per_batch = _scheduler(opt, cfg, len(loader))
        result, best_state, stale = TrainResult(threads=torch.get_num_threads()), None, 0
        for epoch in range(1, cfg.max_epochs + 1):
            t0 = time.perf_counter()
            train_loss, n = _train_epoch(model, loader, loss_fn, opt, sched if per_batch else None, GRAD_CLIP)
            train_s = time.perf_counter() - t0
            val = evaluate(model, val_ds, loss_fn, workers)
            metrics = {"train_loss": train_loss, "val_loss": val["loss"], "val_bce": val["bce"],
                       "val_precision": val["precision"], "val_recall": val["recall"],
                       "val_f1": val["f1"], "lr": opt.param_groups[0]["lr"],
                       "epoch_s": time.perf_counter() - t0, "train_clips_per_s": n / train_s}
            if sched is not None and not per_batch:
                sched.step(val["loss"])
            result.history.append(metrics)
            if val["loss"] < result.best_val_loss:
                result.best_val_loss, result.best_epoch, stale = val["loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            else:
                print(f"epoch {epoch:2d}  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
                      flush=True)
            check_safety_stop(cfg.safety_minutes, start, epoch)
            if stale >= cfg.patience:
                result.stop_reason = "early_stopping"
                break
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
