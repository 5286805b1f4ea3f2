"""Scores of a stylised image G against its content C and style S, in a feature space of their own.

The scoring network should not be the one that trained or optimised G (else the optimiser grades
itself); the caller picks it (params style_transfer.score_features).
- style_distance: sum over the scoring network's style layers of ||gram(G) - gram(S)||_F / ||gram(S)||_F
- stats_distance: the same layers' per-channel mean/std distance (Huang & Belongie 2017), relative to S's
- content_distance: ||F(G) - F(C)||_F / ||F(C)||_F at the scoring network's content layer
- ssim: structural similarity of the luminances of G and C (Wang et al. 2004, 11-px Gaussian window)
- edge_correlation: Pearson correlation of the Sobel gradient magnitudes of G and C
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from components.style.features import FeatureNet
from components.style.losses import gram, mean_std_distance


def _luma(image: torch.Tensor) -> torch.Tensor:
    return (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    ya, yb = _luma(a), _luma(b)
    x = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-x ** 2 / (2 * 1.5 ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 11, 11)
    blur = lambda t: F.conv2d(t, window)  # noqa: E731 -- valid windows only
    mu_a, mu_b = blur(ya), blur(yb)
    var_a, var_b, cov = blur(ya * ya) - mu_a ** 2, blur(yb * yb) - mu_b ** 2, blur(ya * yb) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def edge_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    kernels = torch.stack([sobel, sobel.T]).unsqueeze(1)
    ea, eb = (F.conv2d(_luma(t), kernels).pow(2).sum(1).sqrt().flatten() for t in (a, b))
    ea, eb = ea - ea.mean(), eb - eb.mean()
    return float((ea * eb).sum() / (ea.norm() * eb.norm()).clamp_min(1e-12))


@torch.no_grad()
def score(net: FeatureNet, content_layer: str, style_layers: list[str], generated: torch.Tensor,
          content: torch.Tensor, style: torch.Tensor) -> dict[str, float]:
    """The figures above for one generated image [1, 3, H, W] (all three at the same size)."""
    layers = list(dict.fromkeys([content_layer, *style_layers]))
    fg, fc, fs = (net(t, layers) for t in (generated, content, style))
    style_d = sum(float((gram(fg[name]) - gram(fs[name])).norm() / gram(fs[name]).norm().clamp_min(1e-12))
                  for name in style_layers)
    stats_d = sum(float(mean_std_distance(fg[name], fs[name]) / mean_std_distance(torch.zeros_like(fs[name]),
                  fs[name]).clamp_min(1e-12)) for name in style_layers)
    content_d = float((fg[content_layer] - fc[content_layer]).norm() / fc[content_layer].norm().clamp_min(1e-12))
    return {"style_distance": style_d, "stats_distance": stats_d, "content_distance": content_d,
            "ssim": ssim(generated, content), "edge_correlation": edge_correlation(generated, content)}


def summarise(rows: list[dict]) -> dict[str, float]:
    """Mean of each figure over rows of {"fast": {...}, "gatys": {...}} and the fast/Gatys ratios of the
    two distances (1.15 = 15% further from the target than Gatys)."""
    out = {}
    for method in ("fast", "gatys"):
        for key in rows[0][method]:
            out[f"{method}_{key}"] = sum(r[method][key] for r in rows) / len(rows)
    for key in ("style_distance", "content_distance"):
        out[f"{key}_ratio"] = out[f"fast_{key}"] / max(out[f"gatys_{key}"], 1e-12)
    return out
