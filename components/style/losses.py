"""The losses of neural style transfer (Gatys et al. 2015; Johnson et al. 2016).

Normalisation (so a weight means the same at any image size and layer width):
- gram(F) = F F^T / (C H W) for activations F of shape [N, C, H, W] reshaped to [N, C, HW]:
  G_ij = sum_k F_ik F_jk / (C H W) (Johnson's normalisation; Gatys' 1 / (4 C^2 (HW)^2) differs by a constant).
- content_loss = ||F(G) - F(C)||_F^2 / (C H W): the mean squared activation difference.
- style_loss = sum_l w_l ||gram_l(G) - gram_l(S)||_F^2, summed over the Gram entries.
- total_variation = mean of squared differences between neighbouring pixels (both directions).
All losses average over the batch.
"""
from __future__ import annotations

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, C] Gram matrices, normalised by C*H*W."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(generated: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of one layer's activations."""
    return ((generated - content) ** 2).mean()


def style_loss(generated: dict[str, torch.Tensor], style_grams: dict[str, torch.Tensor],
               weights: dict[str, float]) -> torch.Tensor:
    """sum_l w_l ||gram(generated_l) - style_grams_l||_F^2 (per image, averaged over the batch).
    style_grams may have batch 1 (one style image for a batch of generated images)."""
    total = 0.0
    for layer, w in weights.items():
        diff = gram(generated[layer]) - style_grams[layer]
        total = total + w * (diff ** 2).sum(dim=(1, 2)).mean()
    return total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally adjacent pixels."""
    dy = images[:, :, 1:, :] - images[:, :, :-1, :]
    dx = images[:, :, :, 1:] - images[:, :, :, :-1]
    return (dy ** 2).mean() + (dx ** 2).mean()


def mean_std_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of per-channel feature statistics (Huang & Belongie 2017):
    ||mu(a) - mu(b)||_2 + ||sigma(a) - sigma(b)||_2 over channels, averaged over the batch."""
    fa, fb = a.flatten(2), b.flatten(2)
    dmu = (fa.mean(2) - fb.mean(2)).norm(dim=1)
    dsd = (fa.std(2) - fb.std(2)).norm(dim=1)
    return (dmu + dsd).mean()
