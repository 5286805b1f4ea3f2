"""A contact sheet of faces: identities in rows, their images in columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def contact_sheet(images: np.ndarray, manifest: pd.DataFrame, path: Path, rows: int = 12, cols: int = 10,
                  scale: int = 2) -> Path:
    """PNG of the first `cols` images of `rows` identities (evenly spread over the manifest's
    identities), each row labelled with the identity and its skin tone."""
    from PIL import Image, ImageDraw

    names = list(dict.fromkeys(manifest["identity"]))
    chosen = [names[k] for k in np.linspace(0, len(names) - 1, min(rows, len(names))).astype(int)] if names else []
    cols = min(cols, int(manifest["identity"].value_counts().max())) if len(manifest) else 1
    side = images.shape[1] * scale
    label = 64
    sheet = Image.new("RGB", (label + cols * side, max(1, len(chosen)) * side), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, name in enumerate(chosen):
        picks = np.flatnonzero((manifest["identity"] == name).to_numpy())[:cols]
        tone = manifest["skin_tone"].iloc[picks[0]] if "skin_tone" in manifest else ""
        draw.text((4, r * side + side // 2 - 10), f"{name}\n{'' if pd.isna(tone) else tone}", fill=(0, 0, 0))
        for c, k in enumerate(picks):
            tile = Image.fromarray(np.asarray(images[k])).resize((side, side), Image.NEAREST)
            sheet.paste(tile, (label + c * side, r * side))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return Path(path)
