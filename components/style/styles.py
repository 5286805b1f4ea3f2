"""Procedural style images, deterministic by seed: used when data/raw/style/styles/ has no images.

- swirl: swirling brush strokes (line-integral convolution of noise along a vortex flow field,
  coloured by a warm/cool palette, in the manner of a Van Gogh sky);
- mosaic: Voronoi tesserae in saturated colours, separated by dark grout;
- woodcut: black ink hatching on cream paper, the stroke direction and thickness following a tonal field.
"""
from __future__ import annotations

import numpy as np

from components.vision.scenes import _smooth_noise

STYLES = ("swirl", "mosaic", "woodcut")


def _palette(rng: np.random.Generator, t: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] onto a piecewise-linear palette of [K, 3] colours (random order by rng)."""
    colours = colours[rng.permutation(len(colours))]
    pos = np.clip(t, 0, 1) * (len(colours) - 1)
    i = np.minimum(pos.astype(int), len(colours) - 2)
    f = (pos - i)[..., None]
    return colours[i] * (1 - f) + colours[i + 1] * f


def swirl(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = 2 * np.pi * _smooth_noise(rng, size, 4) * 1.5
    for cx, cy, spin in zip(rng.random(4), rng.random(4), rng.choice([-1, 1], 4)):  # a few vortices
        r2 = (x - cx) ** 2 + (y - cy) ** 2
        angle = angle + spin * np.exp(-r2 / 0.03) * (np.arctan2(y - cy, x - cx) + np.pi / 2 - angle)
    vx, vy = np.cos(angle), np.sin(angle)
    noise = rng.random((size, size)).astype(np.float32)
    noise = (noise > 0.85).astype(np.float32)  # sparse dabs smear into strokes
    acc = np.zeros_like(noise)
    for direction in (1, -1):
        px, py = x * size, y * size
        for _ in range(14):
            ix, iy = np.clip(px.astype(int), 0, size - 1), np.clip(py.astype(int), 0, size - 1)
            acc += noise[iy, ix]
            px, py = px + direction * 1.5 * vx[iy, ix], py + direction * 1.5 * vy[iy, ix]
    strokes = acc / acc.max()
    colours = np.array([[0.07, 0.15, 0.45], [0.15, 0.35, 0.75], [0.35, 0.6, 0.9], [0.95, 0.85, 0.3],
                        [0.98, 0.95, 0.7]], np.float32)
    base = _palette(rng, 0.6 * _smooth_noise(rng, size, 3) + 0.4 * strokes, colours)
    return base * (0.75 + 0.25 * strokes[..., None])


def mosaic(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = 180
    seeds = rng.random((cells, 2)).astype(np.float32) * size
    colours = rng.choice(np.array([[0.8, 0.2, 0.1], [0.95, 0.7, 0.1], [0.1, 0.45, 0.7], [0.1, 0.6, 0.35],
                                   [0.9, 0.9, 0.85], [0.55, 0.2, 0.6]], np.float32), cells)
    colours = colours * rng.uniform(0.8, 1.1, (cells, 1)).astype(np.float32)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2
    order = np.argsort(d, axis=-1)[..., :2]
    near = np.take_along_axis(d, order, -1) ** 0.5
    grout = (near[..., 1] - near[..., 0]) < 2.0
    image = colours[order[..., 0]]
    image[grout] = (0.12, 0.1, 0.08)
    return image


def woodcut(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    tone = _smooth_noise(rng, size, 5)
    angle = np.pi * np.round(_smooth_noise(rng, size, 3) * 4) / 4  # patches of 4 hatch directions
    wobble = 3.0 * _smooth_noise(rng, size, 12)
    u = x * np.cos(angle) + y * np.sin(angle) + wobble
    phase = (u / 6.0) % 1.0
    ink = np.abs(phase - 0.5) < 0.08 + 0.38 * (1 - tone)  # darker tone -> thicker lines
    paper = np.array([0.93, 0.88, 0.76], np.float32)
    return np.where(ink[..., None], np.array([0.08, 0.06, 0.05], np.float32), paper)


def make_style(name: str, seed: int, size: int) -> np.ndarray:
    """uint8 [size, size, 3] RGB: the named procedural style for this seed."""
    makers = {"swirl": swirl, "mosaic": mosaic, "woodcut": woodcut}
    if name not in makers:
        raise ValueError(f"unknown procedural style {name!r}; allowed: {', '.join(STYLES)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, STYLES.index(name)]))
    return (np.clip(makers[name](rng, size), 0, 1) * 255 + 0.5).astype(np.uint8)
