"""The day-night dataset of 64x64 RGB images, for the generate stage (components/generate.py, DESIGN §5).

- synthetic: `generate.images` procedural outdoor scenes (components/vision/scenes.py),
  half day and half night by default, with the notes' hard cases, in the camera styles of
  `generate.styles`; then `generate.unseen_style_images` more in `generate.unseen_style`
  (style column of the manifest), which the split holds out as test_unseen_style;
  deterministic by seed, labelled by `labels.night_below_deg`.
- user: every image under data/raw/day_night/{day,night}/, center-cropped and resized to
  64x64, labelled by its folder. The validate_raw stage has already reported any file
  that is not a readable image in a day/ or night/ folder; none is dropped here.
`generate.source: auto` takes the user's images when that folder holds any.
Outputs: data/day_night/generated/{images.npy (uint8 [N, 64, 64, 3]), manifest.csv (one row
per image: image_id, label, source, file, condition, style, sha256, scene facts)} and
reports/day_night/generate/{examples.png (a contact sheet by condition), styles.png (by
style, the held-out one included), summary.json}.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from components import tracking
from components.config import DayNightParams
from components.stage_cli import StageError, staged_output
from components.vision import scenes
from components.vision.images import LABELS, find_user_images, load_image

# Held-out-style scenes are the renderer's images 5 x 10^8.. (a dataset holds at most 10^6,
# the gate's start at 10^9), so they share no random stream with a training image.
UNSEEN_FIRST_IMAGE = 5 * 10**8


def user_dataset(raw_dir: Path, size: int) -> tuple[np.ndarray, pd.DataFrame]:
    found = find_user_images(raw_dir)
    stray = [str(path) for path, label in found if label not in LABELS]
    if stray:
        raise StageError(f"{raw_dir}: images outside day/ and night/: {', '.join(stray[:5])}; run validate_raw")
    images = np.stack([load_image(path, size) for path, _ in found])
    frame = pd.DataFrame({"image_id": [f"user-{i:06d}" for i in range(len(found))],
                          "label": [label for _, label in found], "condition": "user", "sun_elevation_deg": np.nan,
                          "file": [str(path.relative_to(raw_dir)) for path, _ in found]})
    return images, frame


def run(p: DayNightParams, raw_dir: Path, out_dir: Path, report_dir: Path) -> dict:
    started = time.perf_counter()
    has_user_images = bool(find_user_images(raw_dir)) if raw_dir.is_dir() else False
    source = p.generate.source if p.generate.source != "auto" else ("user" if has_user_images else "synthetic")
    if source == "user":
        if not has_user_images:
            raise StageError(f"{raw_dir}: generate.source is user but there are no images in day/ or night/")
        images, frame = user_dataset(raw_dir, p.image_size)
    else:
        cfg, g = scenes.SceneConfig.from_params(p), p.generate
        images, frame = scenes.generate(cfg, p.seed, g.images)
        if g.unseen_style_images:
            held_out = dataclasses.replace(cfg, styles=(g.unseen_style,))
            more, more_frame = scenes.generate(held_out, p.seed, g.unseen_style_images, first=UNSEEN_FIRST_IMAGE)
            images, frame = np.concatenate([images, more]), pd.concat([frame, more_frame], ignore_index=True)
        frame.insert(3, "file", "")
    frame.insert(2, "source", source)
    frame.insert(3, "sha256", [hashlib.sha256(image.tobytes()).hexdigest() for image in images])
    with staged_output(out_dir) as tmp_out, staged_output(report_dir) as tmp_report:
        np.save(tmp_out / "images.npy", images)
        frame.to_csv(tmp_out / "manifest.csv", index=False)
        scenes.contact_sheet(images, frame, tmp_report / "examples.png")
        if "style" in frame:
            scenes.contact_sheet(images, frame, tmp_report / "styles.png", by="style")
        summary = {"images": len(frame), "source": source, "night_share": round(float((frame.label == "night").mean()), 4),
                   **{f"condition_{k}": int(v) for k, v in frame["condition"].value_counts().sort_index().items()},
                   **({f"style_{k}": int(v) for k, v in frame["style"].value_counts().sort_index().items()}
                      if "style" in frame else {})}
        (tmp_report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    seconds = time.perf_counter() - started
    tracking.log_artifacts([path for path in (report_dir / "examples.png", report_dir / "styles.png",
                                              report_dir / "summary.json") if path.is_file()], "generate")
    tracking.log_metrics({"generate.images": len(frame), "generate.seconds": seconds})
    return {**summary, "seconds": round(seconds, 1), "images_per_second": round(len(frame) / seconds, 1)}

