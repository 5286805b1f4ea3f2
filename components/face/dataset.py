"""Rendered identities and user photos as one dataset: images [N, S, S, 3] uint8 and a
manifest (the data contract: image_id, identity, source, file and the rendered attributes)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from components.face import identities as ids
from components.face import render

BATCH = 128  # images drawn at once: big enough to amortise numpy's per-call cost, small in memory
CHUNK = 50  # identities per job of a rendering process
MANIFEST_COLUMNS = ["image_id", "identity", "source", "file", "shot", "skin_tone", "age", "glasses", "beard",
                    "yaw", "pitch", "roll", "hair_style", "occlusion", "expression"]


def images_per_identity(seed: int, identities: np.ndarray, low: int, high: int) -> np.ndarray:
    """How many images each identity gets, uniform in [low, high], a pure function of (seed, identity)."""
    return np.array([np.random.default_rng([seed, int(i), 2]).integers(low, high + 1) for i in identities], dtype=int)


def render_identities(r, seed: int, identities: np.ndarray, counts: np.ndarray,
                      progress: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """Images of identities[k] (counts[k] each) rendered with the face.render params `r`:
    uint8 [sum(counts), S, S, 3] and their attributes (identity, shot, slices), in order."""
    identities, counts = np.asarray(identities, dtype=np.int64), np.asarray(counts, dtype=int)
    traits = ids.sample_identities(seed, identities, r.glasses_wearers, r.beard_share)
    row = np.repeat(np.arange(len(identities)), counts)
    shot = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, int)
    out = np.empty((len(row), r.size, r.size, 3), dtype=np.uint8)
    frames = []
    steps = range(0, len(row), BATCH)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="render faces", unit="batch")
    for start in steps:
        k = slice(start, start + BATCH)
        t = {name: value[row[k]] for name, value in traits.items()}
        n = ids.sample_nuisances(seed, identities[row[k]], shot[k], t, r)
        out[k] = render.degrade(render.draw(t, n, r.size, r.alignment_jitter), n, r.size)
        frames.append(ids.attributes(identities[row[k]], t, n).assign(shot=shot[k]))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MANIFEST_COLUMNS[1:])
    return out, frame


def _render_chunk(args) -> tuple[np.ndarray, pd.DataFrame]:
    return render_identities(*args)


def render_many(r, seed: int, identities: np.ndarray, counts: np.ndarray, workers: int = 1,
                progress: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """render_identities over a pool of `workers` processes (chunks of identities, results in
    order, so the output does not depend on the worker count)."""
    if workers <= 1 or len(identities) < 2 * CHUNK:
        return render_identities(r, seed, identities, counts, progress)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    jobs = [(r, seed, identities[k:k + CHUNK], counts[k:k + CHUNK]) for k in range(0, len(identities), CHUNK)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        parts = list(tqdm(pool.map(_render_chunk, jobs), total=len(jobs), desc="render faces", unit="chunk",
                          disable=not progress))
    return np.concatenate([p[0] for p in parts]), pd.concat([p[1] for p in parts], ignore_index=True)


def photo_table(raw_dir: Path, size: int, cropped: bool) -> tuple[pd.DataFrame, list[np.ndarray | None]]:
    """Every file under raw_dir (data/raw/faces/<person>/...): one row of detection facts
    (file relative to raw_dir, person, decodes, faces found, error) and, for a photo with
    exactly one face, its chip (else None). Nothing is dropped: the table holds every file."""
    from components.face.align import align_file
    from components.vision.images import ImageReadError, find_user_images

    rows, chips = [], []
    for path, person in find_user_images(Path(raw_dir)):
        row = {"file": path.relative_to(raw_dir).as_posix(), "person": person, "decodes": True, "faces": 0, "error": ""}
        try:
            faces = align_file(path, size, cropped)
        except ImageReadError as exc:
            faces = []
            row.update(decodes=False, error=exc.reason)
        row["faces"] = len(faces)
        if row["decodes"] and len(faces) != 1:
            row["error"] = "no face found" if not faces else f"{len(faces)} faces found (one person per photo)"
        if not person:
            row["error"] = row["error"] or "not in a <person>/ folder"
        rows.append(row)
        chips.append(faces[0].chip if len(faces) == 1 and person else None)
    return pd.DataFrame(rows, columns=["file", "person", "decodes", "faces", "error"]), chips


def build(p, raw_dir: Path, progress: bool = False) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The face dataset of the `face` params section: face.generate.identities rendered
    identities, then every user photo with exactly one face. Returns (images, manifest, the
    per-photo table); the manifest has the contract's columns, image_id = row in images."""
    g = p.generate
    identities = np.arange(g.identities)
    counts = images_per_identity(p.seed, identities, *g.images_per_identity)
    workers = g.workers or len(os.sched_getaffinity(0))
    images, frame = render_many(p.render, p.seed, identities, counts, workers, progress)
    frame = frame.assign(source="rendered", file="")
    photos, chips = photo_table(Path(raw_dir), p.render.size, g.cropped)
    kept = [k for k, c in enumerate(chips) if c is not None]
    if kept:
        user = pd.DataFrame({"identity": photos["person"].iloc[kept].to_numpy(), "source": "user",
                             "file": photos["file"].iloc[kept].to_numpy(), "shot": 0})
        user["shot"] = user.groupby("identity").cumcount()
        images = np.concatenate([images, np.stack([chips[k] for k in kept])])
        frame = pd.concat([frame, user], ignore_index=True)
    frame.insert(0, "image_id", np.arange(len(frame)))
    frame["sha256"] = [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]
    return images, frame[MANIFEST_COLUMNS + ["sha256"]], photos
