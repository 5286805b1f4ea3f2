"""The style-transfer dataset, for the generate stage (components/generate.py).

Content: the user's photos under data/raw/style/content/, else `data.content_images` rendered
scenes; styles: data/raw/style/styles/*, else the procedural `data.styles` (components/style/data.py).
All square at image_size. Outputs: out_dir/{images.npy (content, uint8 [N, S, S, 3]), manifest.csv
(image_id, source, file, sha256), style.npy (this run's style, uint8 [S, S, 3]), styles/<name>.png
(every style present)} and report_dir/{examples.png, summary.json}.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from components.config import StyleTransferParams
from components.stage_cli import staged_output
from components.style.data import content_images, style_images, user_contents
from components.tasks.style_transfer.data import style_name


def run(p: StyleTransferParams, raw_dir: Path, out_dir: Path, report_dir: Path) -> dict:
    started = time.perf_counter()
    chosen = style_name(p, raw_dir)
    styles = style_images(raw_dir / "styles", list(p.data.styles), p.seed, p.image_size)
    contents = content_images(raw_dir / "content", p.data.content_images, p.seed, p.image_size)
    user = bool(user_contents(raw_dir / "content")) if (raw_dir / "content").is_dir() else False
    images = np.stack(list(contents.values()))
    frame = pd.DataFrame({"image_id": [f"content-{i:06d}" for i in range(len(images))],
                          "source": "user" if user else "rendered", "file": list(contents),
                          "sha256": [hashlib.sha256(i.tobytes()).hexdigest() for i in images]})
    figures = {"content_images": len(images), "source": "user" if user else "rendered", "style": chosen,
               "styles": sorted(styles), "image_size": p.image_size,
               "seconds": round(time.perf_counter() - started, 2)}
    with staged_output(out_dir) as tmp:
        np.save(tmp / "images.npy", images)
        np.save(tmp / "style.npy", styles[chosen])
        frame.to_csv(tmp / "manifest.csv", index=False)
        (tmp / "styles").mkdir()
        for name, image in styles.items():
            Image.fromarray(image).save(tmp / "styles" / f"{name}.png")
    with staged_output(report_dir) as tmp:
        from components.style.figures import grid
        shown = list(images[:3])
        grid([[styles[chosen], *shown]], tmp / "examples.png", ("style", *["content"] * len(shown)))
        (tmp / "summary.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures
