"""The style-transfer data: style images and content images, from the user's folders or made here.

- styles: data/raw/style/styles/*.jpg|png (the file's stem names the style), else the procedural styles
  of components/style/styles.py (deterministic by seed);
- content: the images under data/raw/style/content/, else the project's own rendered outdoor scenes
  (components/vision/scenes.py; day-heavy, since a black night sky carries little structure to paint).
Everything is square RGB at one side, centre-cropped (components/vision/images.load_image).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from components.style.styles import make_style
from components.vision.images import IMAGE_SUFFIXES, find_user_images, load_image

STYLE_SUFFIXES = (".jpg", ".jpeg", ".png")


def user_styles(styles_dir: Path) -> list[Path]:
    return sorted(p for p in Path(styles_dir).glob("*") if p.suffix.lower() in STYLE_SUFFIXES
                  and not p.name.startswith("."))


def user_contents(content_dir: Path) -> list[Path]:
    return [p for p, _ in find_user_images(content_dir) if p.suffix.lower() in IMAGE_SUFFIXES]


def style_images(styles_dir: Path, procedural: list[str], seed: int, size: int) -> dict[str, np.ndarray]:
    """name -> uint8 [size, size, 3]: the user's style images when there are any, else the procedural ones."""
    found = user_styles(styles_dir)
    if found:
        return {p.stem: load_image(p, size) for p in found}
    return {name: make_style(name, seed, size) for name in procedural}


def content_images(content_dir: Path, n_rendered: int, seed: int, size: int) -> dict[str, np.ndarray]:
    """id -> uint8 [size, size, 3]: the user's content photos when there are any, else rendered scenes."""
    found = user_contents(content_dir)
    if found:
        return {str(p.relative_to(content_dir)): load_image(p, size) for p in found}
    from components.config import DayNightParams
    from components.vision.scenes import SceneConfig, generate
    # the renderer at the schema's day_night settings, not this project's: retuning day-night's data
    # must not change the style pipeline's content images
    images, frame = generate(SceneConfig.from_params(DayNightParams(), size=size, night_share=0.2), seed, n_rendered)
    return dict(zip(frame["image_id"], images))
