"""Images and fast networks on disk, for style transfer (square RGB tensors in [0, 1])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from components.checkpoint_config import read_checkpoint, rebuilding
from components.errors import InputError
from components.style.fast import TransformNet
from components.vision.images import load_image

FORMAT = "cs230-style-net/2"  # /2: trained from scratch (/1 learnt a change of the input image)


def read_image(path: Path, size: int) -> torch.Tensor:
    """[1, 3, size, size] float in [0, 1]: centre-cropped square, Lanczos-resized. Raises ImageReadError
    (one line naming the file) for a missing, unreadable or empty image."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such image file")
    return to_tensor(load_image(Path(path), size))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [0, 1] (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div(255).contiguous()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float [1, 3, H, W] (or [3, H, W]) in [0, 1] -> uint8 [H, W, 3]."""
    image = image.detach()[0] if image.dim() == 4 else image.detach()
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def write_png(image: torch.Tensor, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path, format="PNG")


def save_fast(net: TransformNet, path: Path, meta: dict) -> None:
    """The fast network's config, weights and facts (style, feature network, ...) in one torch file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "config": net.config, "state_dict": net.state_dict(), "meta": meta}, path)


def load_fast(path: Path) -> tuple[TransformNet, dict]:
    """(network in eval mode, its meta). A file that is not a saved fast network of this FORMAT (an older
    one needs `cs230 run style-transfer` again) raises a one-line ValueError naming it."""
    saved = read_checkpoint(path, FORMAT, "style network")
    with rebuilding(path, FORMAT):
        net = TransformNet(**saved["config"])
        net.load_state_dict(saved["state_dict"])
    return net.eval(), saved.get("meta", {})
