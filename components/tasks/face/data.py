"""Face, data side: photo and dataset checks, the split by identity, the arrays of a split,
and the fixed gate set of rendered identities."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from components import paths
from components.config import FaceParams
from components.stage_cli import StageError
from components.validate import Check, Table, all_true

# ------------------------------------------------------------------------------ validate

RAW_DIR = paths.RAW_FACES_DIR
SOURCES = ("rendered", "user")


def raw_tables(p: FaceParams, raw_dir: Path, workers: int = 0) -> list[Table]:
    """One row per file under data/raw/faces/ (dlib's detection result): readable, in a
    <person>/ folder, exactly one face (face.generate.cropped: every photo is one face).
    An absent or empty folder passes (rendered identities only)."""
    from components.face.dataset import photo_table

    frame, _ = photo_table(raw_dir, p.render.size, p.generate.cropped) if Path(raw_dir).is_dir() else \
        (pd.DataFrame(columns=["file", "person", "decodes", "faces", "error"]), [])
    frame = frame.assign(in_person_folder=frame["person"].astype(str) != "")
    return [Table("photos", frame, "file", [
        all_true("decodes", "readable_image"),
        all_true("in_person_folder", "in_a_person_folder"),
        Check("one_face", "ExpectColumnValuesToBeBetween", {"column": "faces", "min_value": 1, "max_value": 1})])]


def load_dataset(data_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """images uint8 [N, S, S, 3] (memory-mapped) and the manifest, one row per image."""
    try:
        images = np.load(Path(data_dir) / "images.npy", mmap_mode="r")
        manifest = pd.read_csv(Path(data_dir) / "manifest.csv", dtype={"identity": str, "file": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the face dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    if len(images) != len(manifest) or not {"image_id", "identity", "source", "file", "sha256"} <= set(manifest.columns):
        raise StageError(f"{data_dir}: images.npy ({len(images)} images) and manifest.csv ({len(manifest)} rows, "
                         f"columns {list(manifest.columns)[:6]}) do not belong together; run the generate stage again")
    return images, manifest.assign(file=manifest["file"].fillna(""))


def generated_tables(p: FaceParams, data_dir: Path, workers: int = 0) -> list[Table]:
    """Per image: shape, dtype, not blank, a known source, unique pixels (sha256 of the
    pixels, recomputed); per identity: enough images; and the balance of images per identity."""
    images, manifest = load_dataset(data_dir)
    flat = images.reshape(len(images), -1)
    frame = pd.DataFrame({
        "image_id": manifest["image_id"], "identity": manifest["identity"], "source": manifest["source"],
        "height": images.shape[1], "width": images.shape[2], "channels": images.shape[3] if images.ndim == 4 else 1,
        "dtype": str(images.dtype), "pixel_std": flat.std(axis=1, dtype=np.float64),
        "sha256": [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]})
    frame["row_matches"] = frame["image_id"].to_numpy() == np.arange(len(frame))
    counts = manifest["identity"].value_counts().sort_index()
    per_identity = pd.DataFrame({"identity": counts.index, "images": counts.to_numpy()})
    balance = pd.DataFrame({"dataset": ["all"], "identities": [len(counts)],
                            "fewest": [int(counts.min()) if len(counts) else 0], "most": [int(counts.max()) if len(counts) else 0]})
    balance["spread"] = balance["most"] / balance["fewest"].clip(lower=1)
    v, size = p.validation, p.render.size
    return [
        Table("images", frame, "image_id", [
            Check("height", "ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [size]}),
            Check("width", "ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [size]}),
            Check("rgb", "ExpectColumnValuesToBeInSet", {"column": "channels", "value_set": [3]}),
            Check("dtype_uint8", "ExpectColumnValuesToBeInSet", {"column": "dtype", "value_set": ["uint8"]}),
            Check("not_blank", "ExpectColumnValuesToBeBetween", {"column": "pixel_std", "min_value": v.min_pixel_std}),
            Check("source", "ExpectColumnValuesToBeInSet", {"column": "source", "value_set": list(SOURCES)}),
            all_true("row_matches", "image_id_is_row"),
            Check("no_duplicates", "ExpectColumnValuesToBeUnique", {"column": "sha256"})]),
        Table("identities", per_identity, "identity", [
            Check("min_images_per_identity", "ExpectColumnValuesToBeBetween",
                  {"column": "images", "min_value": v.min_images_per_identity})]),
        Table("balance", balance, "dataset", [
            Check("images_per_identity_spread", "ExpectColumnValuesToBeBetween",
                  {"column": "spread", "max_value": v.max_images_ratio}),
            Check("at_least_3_identities", "ExpectColumnValuesToBeBetween", {"column": "identities", "min_value": 3})])]


# --------------------------------------------------------------------------------- split

ID_COLUMN = "image_id"
SPLITS = ("train", "val", "test")


def assign_splits(manifest: pd.DataFrame, p: FaceParams) -> pd.Series:
    """By identity: every image of a person in one split (test people are never seen in
    training or threshold picking), stratified by skin tone (user photos: their own stratum)."""
    from components.split import deal_folds

    strata = manifest["skin_tone"].where(manifest["source"] == "rendered", "user").fillna("user").astype(str)
    return deal_folds(strata, manifest["identity"].astype(str),
                      {"train": p.split.train, "val": p.split.val, "test": p.split.test}, p.seed)


def describe_split(rows: pd.DataFrame) -> dict:
    counts = rows["identity"].value_counts()
    return {"images": len(rows), "identities": int(len(counts)),
            "user_identities": int(rows.loc[rows["source"] == "user", "identity"].nunique()),
            "images_per_identity": {"min": int(counts.min()) if len(counts) else 0,
                                    "max": int(counts.max()) if len(counts) else 0},
            "skin_tone": rows["skin_tone"].value_counts(normalize=True).round(3).sort_index().to_dict()}


def split_arrays(data_dir: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, S, S, 3] in memory, identity names [n]) of the given image ids."""
    images, manifest = load_dataset(Path(data_dir))
    index = pd.Series(np.arange(len(manifest)), index=manifest["image_id"].astype(str))
    missing = [i for i in map(str, ids) if i not in index.index]
    if missing:
        raise StageError(f"{data_dir}/manifest.csv: {len(missing)} ids of the split are missing, e.g. {missing[:3]}")
    rows = index.loc[[str(i) for i in ids]].to_numpy()
    return np.asarray(images[rows]), manifest["identity"].to_numpy()[rows]


def identity_subset(p: FaceParams, data_dir: Path, ids: list[str], n: int) -> list[str]:
    """About n image ids of whole identities (seeded by face.seed), in their split order: a trial needs
    every image of its people, since n images drawn at random would give most people one image and no
    positive pair. Identities are added until n images are reached."""
    if n >= len(ids):
        return list(ids)
    _, manifest = load_dataset(Path(data_dir))
    identity = manifest.set_index(manifest["image_id"].astype(str))["identity"].loc[list(map(str, ids))].to_numpy()
    people = np.unique(identity)
    counts = pd.Series(identity).value_counts()
    chosen, total = set(), 0
    for person in np.random.default_rng(p.seed).permutation(people):
        if total >= n:
            break
        chosen.add(person)
        total += int(counts[person])
    return [i for i, person in zip(ids, identity) if person in chosen]


# ---------------------------------------------------------------------------------- gate

# Gate identities are the renderer's identities 10^9.. of the gate's seed; a dataset holds at
# most 200,000 (generate.identities), so no gate identity is a training one, whatever the seeds.
GATE_FIRST_IDENTITY = 10**9


def make_gate_data(p: FaceParams, out_dir: Path) -> dict:
    """The face gate set: gate.identities rendered identities, gate.images_per_identity
    images each, with the pipeline's renderer settings (face.render) from the gate's own seed.
    Writes images.npy and manifest.csv in the generated dataset's format."""
    import os

    from components.face.dataset import MANIFEST_COLUMNS, render_many

    g = p.gate
    identities = GATE_FIRST_IDENTITY + np.arange(g.identities)
    images, frame = render_many(p.render, g.seed, identities, np.full(g.identities, g.images_per_identity),
                                p.generate.workers or len(os.sched_getaffinity(0)))
    frame = frame.assign(source="rendered", file="")
    frame.insert(0, "image_id", np.arange(len(frame)))
    frame["sha256"] = [hashlib.sha256(image.tobytes()).hexdigest() for image in images]
    np.save(out_dir / "images.npy", images)
    frame[MANIFEST_COLUMNS + ["sha256"]].to_csv(out_dir / "manifest.csv", index=False)
    return {"images": len(frame), "identities": int(g.identities), "seed": g.seed,
            "skin_tone": frame["skin_tone"].value_counts().sort_index().to_dict()}
