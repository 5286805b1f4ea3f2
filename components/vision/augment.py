"""Photometric augmentation of training batches, drawn afresh for every batch of every epoch.

Each image gets its own colour jitter (per-channel gain, saturation), exposure shift and gamma,
Gaussian noise, a box blur and cut-outs (rectangles of flat grey), each with its own chance.
Exposure shifts stay small (a fraction of a stop): day and night differ by 10+ stops, so the
label survives, but the model cannot lean on the exact brightness the renderer gives a class.
"""
from __future__ import annotations

import numpy as np

from components.config import DayNightAugment


def augment(images: np.ndarray, rng: np.random.Generator, cfg: DayNightAugment) -> np.ndarray:
    """uint8 [B, S, S, 3] -> uint8 [B, S, S, 3]: the same images with new pixels.

    `cfg` is params.yaml's day_night.train.augment (its `enabled` is the trainer's business)."""
    x = np.asarray(images, np.float32) / 255
    b, size = len(x), x.shape[1]
    on = (rng.random(b) < cfg.p).astype(np.float32)[:, None, None, None]
    gain = 2.0 ** (rng.normal(0, cfg.colour, (b, 1, 1, 3)) + rng.uniform(-cfg.exposure_ev, cfg.exposure_ev, (b, 1, 1, 1)))
    grey = x.mean(axis=3, keepdims=True)
    saturation = 2.0 ** rng.normal(0, cfg.colour, (b, 1, 1, 1))
    y = (grey + (x - grey) * saturation.astype(np.float32)) * gain.astype(np.float32)
    y = np.clip(y, 0, 1) ** np.exp(rng.uniform(-cfg.gamma, cfg.gamma, (b, 1, 1, 1))).astype(np.float32)
    y += rng.standard_normal(y.shape, dtype=np.float32) * rng.uniform(0, cfg.noise, (b, 1, 1, 1)).astype(np.float32)
    blurred = rng.random(b) < cfg.blur
    if blurred.any():
        padded = np.pad(y[blurred], ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        y[blurred] = sum(padded[:, i:i + size, j:j + size] for i in range(3) for j in range(3)) / 9
    for k in range(b):
        for _ in range(int(rng.integers(0, cfg.cutouts + 1))):
            h, w = rng.integers(2, size // 4 + 1, 2)
            r, c = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            y[k, r:r + h, c:c + w] = rng.uniform(0, 1)
    return (np.clip(on * y + (1 - on) * x, 0, 1) * 255 + 0.5).astype(np.uint8)
