"""Day-night, data side: image checks, the stratified split, and the arrays of a split."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from components import paths
from components.config import DayNightParams
from components.stage_cli import StageError
from components.validate import Check, Table, all_true

LABELS = ("day", "night")

# ------------------------------------------------------------------------------ validate

RAW_DIR = paths.RAW_DAY_NIGHT_DIR


def raw_tables(p: DayNightParams, raw_dir: Path, workers: int = 0) -> list[Table]:
    """Every file under data/raw/day_night/ is a readable image in a day/ or night/ folder,
    big enough to resize. An absent or empty folder passes (the renderer is used)."""
    from components.vision.images import find_user_images, inspect_image

    found = find_user_images(raw_dir) if raw_dir.is_dir() else []
    rows = [{**inspect_image(path), "file": str(path), "label_folder": label} for path, label in found]
    frame = pd.DataFrame(rows, columns=["file", "label_folder", "decodes", "error", "width", "height", "mode"])
    side = p.validation.min_user_image_side
    return [Table("images", frame, "file", [
        all_true("decodes", "readable_image"),
        Check("label_folder", "ExpectColumnValuesToBeInSet", {"column": "label_folder", "value_set": list(LABELS)}),
        Check("min_width", "ExpectColumnValuesToBeBetween", {"column": "width", "min_value": side}),
        Check("min_height", "ExpectColumnValuesToBeBetween", {"column": "height", "min_value": side})])]


def load_dataset(data_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """images uint8 [N, S, S, 3] (memory-mapped) and the manifest, one row per image."""
    try:
        images = np.load(data_dir / "images.npy", mmap_mode="r")
        manifest = pd.read_csv(data_dir / "manifest.csv")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the generated dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    if len(images) != len(manifest) or not {"image_id", "label", "condition", "sha256"} <= set(manifest.columns):
        raise StageError(f"{data_dir}: images.npy ({len(images)} images) and manifest.csv ({len(manifest)} rows, "
                         f"columns {list(manifest.columns)[:6]}) do not belong together; run the generate stage again")
    return images, manifest


def generated_tables(p: DayNightParams, data_dir: Path, workers: int = 0) -> list[Table]:
    """Shape, dtype and value range of every image, not blank, label set, class balance and
    duplicates (by a hash of the pixels)."""
    images, manifest = load_dataset(data_dir)
    flat = images.reshape(len(images), -1)
    frame = pd.DataFrame({
        "image_id": manifest["image_id"], "label": manifest["label"],
        "height": images.shape[1], "width": images.shape[2], "channels": images.shape[3] if images.ndim == 4 else 1,
        "dtype": str(images.dtype), "min": flat.min(axis=1).astype(float), "max": flat.max(axis=1).astype(float),
        "pixel_std": flat.std(axis=1, dtype=np.float64),
        "sha256": [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]})
    frame["is_night"] = (frame["label"] == "night").astype(float)
    v, size = p.validation, p.image_size
    return [Table("images", frame, "image_id", [
        Check("height", "ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [size]}),
        Check("width", "ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [size]}),
        Check("rgb", "ExpectColumnValuesToBeInSet", {"column": "channels", "value_set": [3]}),
        Check("dtype_uint8", "ExpectColumnValuesToBeInSet", {"column": "dtype", "value_set": ["uint8"]}),
        Check("value_range", "ExpectColumnValuesToBeBetween", {"column": "min", "min_value": 0.0}),
        Check("value_range_max", "ExpectColumnValuesToBeBetween", {"column": "max", "max_value": 255.0}),
        Check("not_blank", "ExpectColumnValuesToBeBetween", {"column": "pixel_std", "min_value": v.min_pixel_std}),
        Check("label_set", "ExpectColumnValuesToBeInSet", {"column": "label", "value_set": list(LABELS)}),
        Check("class_balance", "ExpectColumnMeanToBeBetween", {
            "column": "is_night", "min_value": v.min_night_share, "max_value": v.max_night_share}),
        Check("no_duplicates", "ExpectColumnValuesToBeUnique", {"column": "sha256"})])]


# --------------------------------------------------------------------------------- split

ID_COLUMN = "image_id"
SPLITS = ("train", "val", "test", "test_unseen_style")
HARD_CASES = ("lit_city_night", "overcast_day", "dusk_dawn")  # reported per condition, model and baseline


def assign_splits(manifest: pd.DataFrame, p: DayNightParams) -> pd.Series:
    """Stratified by label and scene condition (each hard case in every split in proportion),
    grouped by the pixels' hash so identical images never straddle two splits. Every image of
    the held-out style (generate.unseen_style) is test_unseen_style: training never sees it."""
    from components.split import deal_folds

    unseen = manifest["style"].eq(p.generate.unseen_style) if "style" in manifest else pd.Series(False, manifest.index)
    seen = manifest[~unseen]
    strata = seen["label"] + "|" + seen["condition"].astype(str)
    split = pd.Series("test_unseen_style", index=manifest.index)
    split[seen.index] = deal_folds(strata, seen["sha256"], {"train": p.split.train, "val": p.split.val,
                                                            "test": p.split.test}, p.seed)
    return split


def describe_split(rows: pd.DataFrame) -> dict:
    return {"images": len(rows), "night_share": round(float((rows["label"] == "night").mean()), 4) if len(rows) else 0.0,
            "conditions": rows["condition"].value_counts(normalize=True).round(3).sort_index().to_dict()}


def split_arrays(data_dir: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, S, S, 3] in memory, labels 0 = day / 1 = night) of the given ids."""
    images, manifest = load_dataset(Path(data_dir))
    row = pd.Series(np.arange(len(manifest)), index=manifest["image_id"])
    missing = [i for i in ids if i not in row.index]
    if missing:
        raise StageError(f"{data_dir}/manifest.csv: {len(missing)} ids of the split are missing, e.g. {missing[:3]}")
    index = row.loc[ids].to_numpy()
    return np.asarray(images[index]), (manifest["label"].to_numpy()[index] == "night").astype(np.int64)


# ---------------------------------------------------------------------------------- gate

# Gate scenes are the renderer's images 10^9.. of the gate's seed; a dataset holds at most
# 10^6 (generate.images), so no gate image is a training image, whatever the two seeds are.
GATE_FIRST_IMAGE = 10**9


def make_gate_data(p: DayNightParams, out_dir: Path) -> dict:
    """The day-night gate set: gate.images scenes rendered with the pipeline's renderer
    settings (generate, labels) from the gate's own seed. Writes images.npy and manifest.csv
    (image_id, sha256, label, condition and the scene facts), as the generate stage does."""
    from components.vision import scenes

    cfg = scenes.SceneConfig.from_params(p)
    images, frame = scenes.generate(cfg, p.gate.seed, p.gate.images, first=GATE_FIRST_IMAGE)
    frame.insert(1, "sha256", [hashlib.sha256(image.tobytes()).hexdigest() for image in images])
    np.save(out_dir / "images.npy", images)
    frame.to_csv(out_dir / "manifest.csv", index=False)
    return {"images": len(frame), "night_share": round(float((frame["label"] == "night").mean()), 4),
            **{f"condition_{k}": int(v) for k, v in frame["condition"].value_counts().sort_index().items()}}
