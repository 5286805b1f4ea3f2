"""The perceptual objective shared by Gatys' pixel optimisation and the fast network's training.

alpha * content + beta * style + tv * total_variation, with each term made relative to its target so
one set of weights means the same for every feature network (their activation scales differ by
orders of magnitude): the content term is divided by mean(F_C^2) and each style layer's weight w_l by
||gram_l(S)||_F^2 (so a style term of 1.0 means "as far from S's Gram as the zero matrix").
"""
from __future__ import annotations

import torch

from components.style.features import FeatureNet
from components.style.losses import content_loss, gram, style_loss, total_variation


class PerceptualLoss:
    """Targets for one style image (and optionally fixed content activations), weighted as in params."""

    def __init__(self, net: FeatureNet, style: torch.Tensor, content_layer: str, style_layers: dict[str, float],
                 content_weight: float, style_weight: float, tv_weight: float):
        self.net, self.content_layer = net, content_layer
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.layers = tuple(dict.fromkeys([content_layer, *style_layers]))
        with torch.no_grad():
            feats = net(style, list(style_layers))
            self.style_grams = {name: gram(f) for name, f in feats.items()}
        self.style_weights = {name: w / float((self.style_grams[name] ** 2).sum()) for name, w in style_layers.items()}

    def content_target(self, content: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(content, [self.content_layer])[self.content_layer]

    def __call__(self, generated: torch.Tensor, content_feats: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, its terms as floats) for generated images against content activations. Under a
        bf16 autocast only the networks run in bf16: the Gram matrices and the losses stay fp32."""
        feats = self.net(generated, self.layers)
        with torch.autocast("cpu", enabled=False):
            feats = {name: f.float() for name, f in feats.items()}
            content_feats, generated = content_feats.float(), generated.float()
            c = content_loss(feats[self.content_layer], content_feats) / content_feats.pow(2).mean().clamp_min(1e-12)
            s = style_loss(feats, self.style_grams, self.style_weights)
            tv = total_variation(generated)
        total = self.content_weight * c + self.style_weight * s + self.tv_weight * tv
        return total, {"content_loss": c.item(), "style_loss": s.item(), "tv_loss": tv.item(), "loss": total.item()}
