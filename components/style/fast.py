"""Johnson et al. (2016), "Perceptual losses for real-time style transfer": a feed-forward network per style.

Architecture (their Table 1, narrowed): 9x9 conv, two stride-2 3x3 convs, residual blocks, two
resize-convolutions (nearest x2 then 3x3 conv: no checkerboard artefacts, Odena et al. 2016) and a
9x9 conv to RGB; instance normalisation (Ulyanov et al. 2016) and ReLU after every conv but the last;
reflection padding; a sigmoid maps the last conv to [0, 1]. Fully convolutional. Trained from scratch
against the perceptual loss of a frozen feature network, on random crops of the content images, for a
budget of epochs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from components.style.perceptual import PerceptualLoss


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, norm: bool = True) -> nn.Sequential:
    layers = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride)]
    if norm:
        layers += [nn.InstanceNorm2d(c_out, affine=True), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), nn.ReflectionPad2d(1),
                                  nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x):
        return x + self.body(x)


class UpConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 conv (resize-convolution)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = _conv(c_in, c_out, 3)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformNet(nn.Module):
    """RGB [N, 3, H, W] in [0, 1] -> stylised RGB, same shape, in [0, 1]."""

    def __init__(self, width: int = 16, residual_blocks: int = 3):
        super().__init__()
        self.config = {"width": width, "residual_blocks": residual_blocks}
        w = width
        self.net = nn.Sequential(
            _conv(3, w, 9), _conv(w, 2 * w, 3, 2), _conv(2 * w, 4 * w, 3, 2),
            *[Residual(4 * w) for _ in range(residual_blocks)],
            UpConv(4 * w, 2 * w), UpConv(2 * w, w), _conv(w, 3, 9, norm=False))
        nn.init.normal_(self.net[-1][-1].weight, std=0.01)  # starts near mid-grey, far from saturation

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % 4, -w % 4  # the two stride-2 convs need sides divisible by 4
        out = self.net(F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x)[..., :h, :w]
        return torch.sigmoid(out)


def train_fast(net: TransformNet, images: torch.Tensor, loss: PerceptualLoss, epochs: int, batch_size: int,
               lr: float, seed: int, crop: int, on_epoch=None, progress: bool = False,
               bf16: bool = False) -> list[dict]:
    """Fit net on content images [N, 3, S, S] for `epochs` passes in a seeded order, with Adam; each
    batch is one seeded crop-x-crop window of its images (crop >= S: whole images). The images stay at
    the size the style target was computed at, so the network learns strokes at the scale it will
    paint them (images shrunk to the crop size made strokes half as large at full size). bf16: both
    networks run under a bf16 autocast (the weights, Adam and the losses stay fp32). on_epoch(epoch,
    figures) is called after each epoch (mean loss terms); returns those figures per epoch."""
    gen = torch.Generator().manual_seed(seed)
    net.to(memory_format=torch.channels_last)  # oneDNN's faster layout (with the feature net's: 7% a step, 25% in bf16)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    net.train()
    for epoch in tqdm(range(1, epochs + 1), desc="fast network", unit="epoch", disable=not progress, leave=False):
        order = torch.randperm(len(images), generator=gen)
        sums: dict[str, float] = {}
        batches = 0
        for start in range(0, len(images), batch_size):
            batch = images[order[start:start + batch_size]]
            if crop < min(images.shape[-2:]):
                y = int(torch.randint(0, images.shape[-2] - crop + 1, (1,), generator=gen))
                x = int(torch.randint(0, images.shape[-1] - crop + 1, (1,), generator=gen))
                batch = batch[..., y:y + crop, x:x + crop]
            batch = batch.contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                total, terms = loss(net(batch), loss.content_target(batch))
            total.backward()
            opt.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            batches += 1
        figures = {"epoch": epoch, **{k: v / batches for k, v in sums.items()}}
        history.append(figures)
        if on_epoch:
            on_epoch(epoch, figures)
    net.to(memory_format=torch.contiguous_format).eval()  # as a loaded one: the same output to the last bit
    return history
