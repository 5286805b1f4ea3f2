"""Pictures of the style-transfer evaluation: a grid of C, S, Gatys, fast; the alpha/beta frontier."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLUMNS = ("content", "style", "gatys", "fast")


def grid(rows: list[list[np.ndarray]], path: Path, columns: tuple[str, ...] = COLUMNS) -> None:
    """One row per content image: uint8 [S, S, 3] tiles in `columns` order, titled on a header strip."""
    side = rows[0][0].shape[0]
    header = np.full((18, side * len(columns), 3), 255, np.uint8)
    sheet = Image.fromarray(np.concatenate([header] + [np.concatenate(r, 1) for r in rows], 0))
    draw = ImageDraw.Draw(sheet)
    for i, title in enumerate(columns):
        draw.text((i * side + 4, 3), title, fill=(0, 0, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def frontier(points: list[dict], fast: dict, path: Path) -> None:
    """Style distance against content distance: Gatys at each style weight (a line), the fast network (a star)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4))
    xs, ys = [p["content_distance"] for p in points], [p["style_distance"] for p in points]
    ax.plot(xs, ys, "o-", label="Gatys, by style weight beta (alpha = 1)")
    for p in points:
        ax.annotate(f"{p['style_weight']:g}", (p["content_distance"], p["style_distance"]), fontsize=8)
    ax.plot([fast["content_distance"]], [fast["style_distance"]], "r*", markersize=14, label="fast network")
    ax.set_xlabel("content distance to C (lower: more of C kept)")
    ax.set_ylabel("style distance to S (lower: more of S)")
    ax.set_title("style against content (independent feature space)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
