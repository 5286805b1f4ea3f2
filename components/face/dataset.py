"""Rendered identities and user photos as one dataset: images [N, S, S, 3] uint8 and a
manifest (the data contract: image_id, identity, source, file and the rendered attributes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.face import identities as ids
from components.face import render

BATCH = 128  # images drawn at once: big enough to amortise numpy's per-call cost, small in memory
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
