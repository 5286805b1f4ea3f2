"""Speech embeddings of every file of a generated dataset, computed once and read by tune and train.

Embeddings are a pure function of the audio (a frozen model), so they are computed in their
own stage and cached by DVC on the generated data's content. Layout of the output folder:
- embeddings.npy: float32 [total_steps, 96], every file's steps one after the other;
- index.csv: clip_id, start, steps (its rows of embeddings.npy).
"""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from components.audio import audio_io
from components.audio import embedding as emb

_FRONT: emb.SpeechEmbedding | None = None


def _init_worker() -> None:
    global _FRONT
    torch.set_num_threads(1)
    _FRONT = emb.SpeechEmbedding(threads=1)  # one onnxruntime thread per worker process


def _embed_file(path: str) -> np.ndarray:
    return _FRONT(audio_io.read_audio(Path(path)))


def compute(dataset_dir: Path, out_dir: Path, workers: int) -> dict:
    """Embed every file in dataset_dir/manifest.csv into out_dir; returns counts."""
    manifest = pd.read_csv(dataset_dir / "manifest.csv")
    files = [str(dataset_dir / f) for f in manifest["file"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")  # onnxruntime sessions must not be forked
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        arrays = list(tqdm(pool.imap(_embed_file, files, chunksize=4), total=len(files),
                           desc="speech embeddings", unit="file"))
    steps = np.array([len(a) for a in arrays])
    starts = np.concatenate([[0], np.cumsum(steps)[:-1]])
    np.save(out_dir / "embeddings.npy", np.concatenate(arrays).astype(np.float32))
    pd.DataFrame({"clip_id": manifest["clip_id"], "start": starts, "steps": steps}).to_csv(
        out_dir / "index.csv", index=False)
    return {"files": len(files), "steps": int(steps.sum()),
            "hours": round(float(steps.sum()) * emb.STEP_SECONDS / 3600, 3)}


class EmbeddingDataset(Dataset):
    """(embeddings float32 [T, 96], labels float32 [T]) of the given clips, labels on the 80 ms grid.

    Labels come from the generated dataset's labels.npy (its label step, e.g. 20 ms), pooled onto
    the embedding steps (`embedding.pool_labels`); files without a label row get zeros.
    """

    def __init__(self, cache_dir: Path, dataset_dir: Path, clip_ids: list[str], label_step_ms: float):
        self.factor = emb.label_factor(emb.STEP_SECONDS, label_step_ms)
        index = pd.read_csv(cache_dir / "index.csv").set_index("clip_id")
        rows = pd.read_csv(dataset_dir / "manifest.csv").set_index("clip_id")["label_row"]
        missing = [c for c in clip_ids if c not in index.index]
        if missing:
            raise KeyError(f"{len(missing)} clip ids not in {cache_dir / 'index.csv'}, e.g. {missing[:3]}")
        self.clip_ids = list(clip_ids)
        self.spans = [(int(index.at[c, "start"]), int(index.at[c, "steps"])) for c in self.clip_ids]
        self.label_rows = [int(rows[c]) for c in self.clip_ids]
        self.embeddings = np.load(cache_dir / "embeddings.npy", mmap_mode="r")
        self.labels_file = dataset_dir / "labels.npy"
        self._labels = None

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int):
        start, steps = self.spans[i]
        x = np.array(self.embeddings[start: start + steps], dtype=np.float32)
        if self.label_rows[i] < 0:
            y = np.zeros(steps, dtype=np.float32)
        else:
            if self._labels is None:
                self._labels = np.load(self.labels_file, mmap_mode="r")
            y = emb.pool_labels(self._labels[self.label_rows[i]], self.factor)[:steps].astype(np.float32)
            if len(y) != steps:
                raise ValueError(f"{self.clip_ids[i]}: {len(y)} label steps for {steps} embedding steps")
        return torch.from_numpy(x), torch.from_numpy(y)
