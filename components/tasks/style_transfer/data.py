"""Style transfer, data side: image checks, the content split, the gate set, the style of a run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from components import paths
from components.config import StyleTransferParams
from components.stage_cli import StageError
from components.validate import Check, Table, all_true

RAW_DIR = paths.RAW_DIR / "style"  # content/ (photos) and styles/ (style images), both optional
ID_COLUMN = "image_id"
SPLITS = ("train", "val", "test")
GATE_FIRST_IMAGE = 10**9  # the gate's scenes are numbered apart from generate's


def style_name(p: StyleTransferParams, raw_dir: Path = RAW_DIR) -> str:
    """The one style this run trains: style_transfer.style, else the first present."""
    from components.style.data import user_styles
    present = [f.stem for f in user_styles(raw_dir / "styles")] if (raw_dir / "styles").is_dir() else []
    present = present or list(p.data.styles)
    if p.style and p.style not in present:
        raise StageError(f"params.yaml: style_transfer.style {p.style!r} is none of the styles present: {present}")
    return p.style or present[0]


def raw_tables(p: StyleTransferParams, raw_dir: Path, workers: int = 0) -> list[Table]:
    """Every user content photo and style image decodes and is at least data.min_side on each side.
    Absent folders pass (rendered scenes and procedural styles are used)."""
    from components.style.data import user_contents, user_styles
    from components.vision.images import inspect_image

    found = [*(user_contents(raw_dir / "content") if (raw_dir / "content").is_dir() else []),
             *(user_styles(raw_dir / "styles") if (raw_dir / "styles").is_dir() else [])]
    frame = pd.DataFrame([{**inspect_image(f), "file": str(f)} for f in found],
                         columns=["file", "decodes", "error", "width", "height", "mode"])
    side = p.data.min_side
    return [Table("images", frame, "file", [
        all_true("decodes", "readable_image"),
        Check("min_width", "ExpectColumnValuesToBeBetween", {"column": "width", "min_value": side}),
        Check("min_height", "ExpectColumnValuesToBeBetween", {"column": "height", "min_value": side})])]


def load_dataset(data_dir: Path) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """(content images uint8 [N, S, S, 3], the manifest, the run's style image uint8 [S, S, 3])."""
    try:
        images = np.load(Path(data_dir) / "images.npy", mmap_mode="r")
        manifest = pd.read_csv(Path(data_dir) / "manifest.csv")
        style = np.load(Path(data_dir) / "style.npy")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the generated dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    if len(images) != len(manifest) or not {ID_COLUMN, "sha256"} <= set(manifest.columns):
        raise StageError(f"{data_dir}: images.npy and manifest.csv do not belong together; run generate again")
    return images, manifest, style


def _facts(ids: list[str], images: np.ndarray) -> pd.DataFrame:
    flat = images.reshape(len(images), -1)
    return pd.DataFrame({ID_COLUMN: ids, "height": images.shape[1], "width": images.shape[2],
                         "channels": images.shape[3], "dtype": str(images.dtype),
                         "pixel_std": flat.std(axis=1, dtype=np.float64),
                         "sha256": [hashlib.sha256(np.ascontiguousarray(i).tobytes()).hexdigest() for i in images]})


def generated_tables(p: StyleTransferParams, data_dir: Path, workers: int = 0) -> list[Table]:
    """Content images and the style image: size, RGB uint8, not blank; content images unique."""
    images, manifest, style = load_dataset(data_dir)
    size, blank = p.image_size, p.data.min_pixel_std

    def shape_checks() -> list[Check]:
        return [Check("height", "ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [size]}),
                Check("width", "ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [size]}),
                Check("rgb", "ExpectColumnValuesToBeInSet", {"column": "channels", "value_set": [3]}),
                Check("dtype_uint8", "ExpectColumnValuesToBeInSet", {"column": "dtype", "value_set": ["uint8"]}),
                Check("not_blank", "ExpectColumnValuesToBeBetween", {"column": "pixel_std", "min_value": blank})]

    return [Table("content", _facts(list(manifest[ID_COLUMN]), images), ID_COLUMN,
                  [*shape_checks(), Check("no_duplicates", "ExpectColumnValuesToBeUnique", {"column": "sha256"})]),
            Table("style", _facts([style_name(p)], style[None]), ID_COLUMN, shape_checks())]


def assign_splits(manifest: pd.DataFrame, p: StyleTransferParams) -> pd.Series:
    """Random by split shares, grouped by the pixels' hash (identical images stay in one split)."""
    from components.split import deal_folds
    return deal_folds(pd.Series("content", index=manifest.index), manifest["sha256"],
                      {"train": p.split.train, "val": p.split.val, "test": p.split.test}, p.seed)


def describe_split(rows: pd.DataFrame) -> dict:
    return {"images": len(rows), "sources": rows["source"].value_counts().sort_index().to_dict() if len(rows) else {}}


def split_images(data_dir: Path, ids: list[str]) -> np.ndarray:
    """Content images uint8 [n, S, S, 3] of the given ids, in memory."""
    images, manifest, _ = load_dataset(Path(data_dir))
    row = pd.Series(np.arange(len(manifest)), index=manifest[ID_COLUMN].astype(str))
    return np.asarray(images[row.loc[ids].to_numpy()])


def make_gate_data(p: StyleTransferParams, out_dir: Path) -> dict:
    """The gate set: gate.images rendered scenes at gate.size from the gate's own seed (the style
    comes with each model). Writes images.npy and manifest.csv."""
    from components.config import DayNightParams
    from components.vision.scenes import SceneConfig, generate

    cfg = SceneConfig.from_params(DayNightParams(), size=p.gate.size, night_share=0.2)  # as components/style/data.py
    images, frame = generate(cfg, p.gate.seed, p.gate.images, first=GATE_FIRST_IMAGE)
    facts = _facts(list(frame["image_id"]), images)
    np.save(out_dir / "images.npy", images)
    facts[[ID_COLUMN, "sha256"]].to_csv(out_dir / "manifest.csv", index=False)
    return {"images": len(images), "size": p.gate.size}
