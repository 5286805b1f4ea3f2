"""The triplet loss, online triplet mining within a P x K batch, and the batch statistics that show a collapse.

Loss (the notes, FaceNet): L(A, P, N) = max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + alpha, 0), on normalised
embeddings. Every anchor-positive pair of the batch (same identity, different image) is a triplet; its negative
is mined from the other identities:
- semi-hard (FaceNet): the closest negative that is still farther than the positive, d(a,p) < d(a,n) < d(a,p) +
  alpha; it teaches without the noise of the very hardest (mislabelled, near-duplicate) negatives;
- with no semi-hard negative, the closest negative farther than the positive (inactive: loss 0) or, if every
  negative is closer than the positive, the farthest of them (the mildest hard one);
- curriculum: a share `hard_share` of the triplets (chosen at random) takes the hardest negative instead (closest
  of all). Training raises it from 0 over epochs; starting hardest-first collapses every face to one point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-triplet loss [T] of embeddings [T, D]."""
    d_pos = (anchor - positive).pow(2).sum(1)
    d_neg = (anchor - negative).pow(2).sum(1)
    return torch.relu(d_pos - d_neg + margin)


def squared_distances(emb: torch.Tensor) -> torch.Tensor:
    """[B, B] squared Euclidean distances (clamped at 0 against rounding)."""
    sq = emb.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * emb @ emb.T).clamp_min(0)


def mine_triplets(emb: torch.Tensor, labels: torch.Tensor, margin: float, hard_share: float = 0.0,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(anchor, positive, negative) index tensors [T]: every anchor-positive pair, each with its mined
    negative (see the module doc). Mining sees distances only (no gradient)."""
    with torch.no_grad():
        d = squared_distances(emb)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
        a, p = torch.nonzero(same & ~eye, as_tuple=True)
        if len(a) == 0 or bool(same.all()):
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, empty
        d_an = d[a].masked_fill(same[a], float("inf"))  # [T, B]: distances to negatives only
        d_ap = d[a, p][:, None]
        inf = torch.tensor(float("inf"))
        semi = torch.where((d_an > d_ap) & (d_an < d_ap + margin), d_an, inf)
        farther = torch.where(d_an > d_ap, d_an, inf)  # easy negatives: the closest of them
        closer = torch.where(d_an <= d_ap, d_an, -inf)  # hard negatives: the farthest of them
        n = torch.where(torch.isfinite(semi.min(1).values), semi.argmin(1),
                        torch.where(torch.isfinite(farther.min(1).values), farther.argmin(1), closer.argmax(1)))
        if hard_share > 0:
            hard = torch.rand(len(a), generator=generator) < hard_share
            n = torch.where(hard, d_an.argmin(1), n)
    return a, p, n


@dataclass
class BatchStats:
    """Running means over the batches of an epoch; `as_dict` gives the logged figures."""
    loss: float = 0.0
    active: float = 0.0  # share of triplets with loss > 0
    d_pos: float = 0.0  # mean Euclidean anchor-positive distance
    d_neg: float = 0.0  # mean Euclidean anchor-negative distance (the mined negatives)
    spread: float = 0.0  # mean per-dimension std of the embeddings: ~1/sqrt(128) = 0.088 when spread out, 0 collapsed
    batches: int = 0

    def add(self, emb: torch.Tensor, a, p, n, losses: torch.Tensor) -> None:
        with torch.no_grad():
            e = emb.detach()
            figures = (float(losses.mean()), float((losses > 0).float().mean()),
                       float((e[a] - e[p]).norm(dim=1).mean()), float((e[a] - e[n]).norm(dim=1).mean()),
                       float(e.std(0).mean()))
        k = self.batches
        for name, value in zip(("loss", "active", "d_pos", "d_neg", "spread"), figures):
            setattr(self, name, (getattr(self, name) * k + value) / (k + 1))
        self.batches = k + 1

    def as_dict(self) -> dict:
        return {"train_loss": self.loss, "active_share": self.active, "d_pos": self.d_pos, "d_neg": self.d_neg,
                "spread": self.spread}


def pk_batches(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of P x K batches (indices into labels) that shows every image once: each identity's images are
    shuffled and cut into chunks of K (the last chunk topped up from the same identity); round r holds every
    identity's r-th chunk in random order; rounds are concatenated and cut into batches of P chunks (an
    incomplete last batch is dropped). Identities with one image have no positive and are left out."""
    labels = np.asarray(labels)
    chunks_by_id = []
    for ident in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == ident))
        if len(idx) < 2:
            continue
        n_chunks = -(-len(idx) // k)
        padded = np.concatenate([idx, rng.choice(idx, n_chunks * k - len(idx), replace=len(idx) < n_chunks * k - len(idx))])
        chunks_by_id.append(padded.reshape(n_chunks, k))
    order = []
    for r in range(max((len(c) for c in chunks_by_id), default=0)):
        round_chunks = [c[r] for c in chunks_by_id if r < len(c)]
        order += [round_chunks[i] for i in rng.permutation(len(round_chunks))]
    return [np.concatenate(order[i: i + p]) for i in range(0, len(order) - p + 1, p)]
