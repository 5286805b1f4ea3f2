"""Gatys et al. (2015): optimise the pixels of G (never the weights) against the perceptual loss."""
from __future__ import annotations

import time
from typing import Literal

import torch
from tqdm import tqdm

from components.style.perceptual import PerceptualLoss


def stylize(content: torch.Tensor, loss: PerceptualLoss, steps: int, optimizer: Literal["lbfgs", "adam"] = "lbfgs",
            init: Literal["content", "noise"] = "content", lr: float = 1.0, adam_lr: float = 0.02, seed: int = 0,
            progress: bool = False) -> tuple[torch.Tensor, dict]:
    """content [1, 3, H, W] in [0, 1] -> (stylised image [1, 3, H, W] in [0, 1], final figures).
    One step is one evaluation of the loss and its gradient (L-BFGS with max_iter 1 per step keeps its
    curvature history across steps). Pixels are clamped to [0, 1] after every step."""
    started = time.perf_counter()
    target = loss.content_target(content)
    if init == "content":
        start = content.detach().contiguous().clone()
    else:
        start = torch.rand(content.shape, generator=torch.Generator().manual_seed(seed))
    image = start.requires_grad_(True)
    opt = (torch.optim.LBFGS([image], lr=lr, max_iter=1, history_size=50) if optimizer == "lbfgs"
           else torch.optim.Adam([image], lr=adam_lr))
    terms: dict = {}

    def closure():
        opt.zero_grad()
        total, parts = loss(image, target)
        total.backward()
        terms.update(parts)
        return total

    bar = tqdm(range(steps), desc=f"gatys {optimizer}", unit="step", disable=not progress, leave=False)
    for _ in bar:
        opt.step(closure)
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        bar.set_postfix(loss=f"{terms['loss']:.3g}")
    with torch.no_grad():
        _, final = loss(image, target)
    final.update(steps=steps, seconds=round(time.perf_counter() - started, 3))
    return image.detach(), final
