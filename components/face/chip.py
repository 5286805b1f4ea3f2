"""dlib's face-chip geometry, shared by the renderer and the aligner.

dlib.get_face_chip(img, shape, size, padding) maps a 5-point shape (two corners of each eye
and the base of the nose) onto a fixed template with a least-squares similarity transform.
The template below is dlib's (get_face_chip_details, 5-point case) in its unit square; the
padding grows the square on every side. Rendered chips are drawn in the same frame, so a
rendered face and a photo aligned by align.py share one geometry.
"""
from __future__ import annotations

import numpy as np

PADDING = 0.25  # dlib's default for recognition chips (the resnet model was trained on these)

# x, y of the 5 landmarks in dlib's unit square: right eye outer/inner corner (image left is
# the subject's right), left eye outer/inner corner, nose base. Order as dlib's 5-point model.
TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475]])


def to_chip(points: np.ndarray, size: int, padding: float = PADDING) -> np.ndarray:
    """Unit-square (template frame) coordinates -> pixel coordinates of a size x size chip."""
    return (np.asarray(points, dtype=np.float64) + padding) / (1 + 2 * padding) * size


def from_chip(pixels: np.ndarray, size: int, padding: float = PADDING) -> np.ndarray:
    """Pixel coordinates of a chip -> the template frame (inverse of to_chip)."""
    return np.asarray(pixels, dtype=np.float64) / size * (1 + 2 * padding) - padding


def template_pixels(size: int, padding: float = PADDING) -> np.ndarray:
    """Where dlib's chip puts the 5 landmarks, in pixels [5, 2]."""
    return to_chip(TEMPLATE, size, padding)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (Umeyama, no reflection) taking src to dst, batched:
    src, dst [..., n, 2] -> [..., 2, 3] matrices M with dst ~= src @ M[:, :2].T + M[:, 2]."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    ms, md = src.mean(-2, keepdims=True), dst.mean(-2, keepdims=True)
    s, d = src - ms, dst - md
    # with complex numbers a similarity is multiplication by one complex scalar
    zs, zd = s[..., 0] + 1j * s[..., 1], d[..., 0] + 1j * d[..., 1]
    a = (np.conj(zs) * zd).sum(-1) / (np.abs(zs) ** 2).sum(-1)
    m = np.stack([np.stack([a.real, -a.imag], -1), np.stack([a.imag, a.real], -1)], -2)
    t = md[..., 0, :] - np.einsum("...ij,...j->...i", m, ms[..., 0, :])
    return np.concatenate([m, t[..., None]], -1)
