"""User images for the day/night task: found in data/raw/day_night/{day,night}/, read as 64x64 RGB."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from components.errors import InputError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LABELS = ("day", "night")
_BACKGROUND = (128, 128, 128)  # transparent pixels become mid grey: neither day-bright nor night-dark


class ImageReadError(InputError):
    """A file that is not a readable image; str() is one line naming the file and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def find_user_images(root: Path) -> list[tuple[Path, str]]:
    """(file, label) for every file under `root`, recursive and sorted. The label is the first folder
    below root ("day", "night", or whatever else is there, for validation to report); files directly
    in root get "". Hidden files (.DS_Store, .gitkeep) are skipped: no one means them as data."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in parts):
            continue
        found.append((path, parts[0] if len(parts) > 1 else ""))
    return found


def _decoded(image: Image.Image) -> Image.Image:
    """The fully decoded first frame, upright (camera EXIF orientation), as 8-bit RGB."""
    image.load()  # decodes every byte: a truncated or corrupt file fails here, not later
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float greyscale: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        image = Image.fromarray((np.clip(values / top, 0, 1) * 255 + 0.5).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_rgb(path: Path) -> Image.Image:
    """The whole image, upright 8-bit RGB (any format Pillow reads). Raises ImageReadError for
    unreadable, truncated, empty or non-image files."""
    try:
        with Image.open(path) as image:
            rgb = _decoded(image)
    # Pillow's format plugins raise many types on corrupt data (OSError, SyntaxError, ValueError,
    # EOFError, struct.error, DecompressionBombError...): all mean "not a readable image" here.
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(Path(path), f"not a readable image ({_first_line(exc)})") from None
    if rgb.width == 0 or rgb.height == 0:
        raise ImageReadError(Path(path), f"empty image ({rgb.width}x{rgb.height})")
    return rgb


def load_image(path: Path, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3] RGB: centre-cropped to a square (no stretching), then resized with
    Lanczos. Raises ImageReadError for unreadable, truncated or non-image files."""
    rgb = read_rgb(path)
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # crop() then resize(): resize(box=...) would let the filter reach past the crop into the margins
    square = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    return np.asarray(square, dtype=np.uint8).copy()


def inspect_image(path: Path) -> dict:
    """Facts for validation; never raises. width/height/mode come from the header (None when it does
    not parse); decodes says whether every byte decodes, error says why not."""
    facts = {"file": str(path), "decodes": False, "error": None, "width": None, "height": None, "mode": None}
    try:
        with Image.open(path) as image:
            facts.update(width=image.width, height=image.height, mode=image.mode)
            image.load()
        facts["decodes"] = True
    except Exception as exc:  # noqa: BLE001 -- as in load_image: any decoder failure is a fact to report
        facts["error"] = f"not a readable image ({_first_line(exc)})"
    return facts
