"""Face, model side: the encoder search space (kind, margin, P, K, lr, width, depth, augmentation), trials and
the final training with the triplet loss (components/face/training.py)."""
from __future__ import annotations

import os
from pathlib import Path

from components.precision import resolve

SCORE = "val_tar"  # TAR at face.evaluate.target_far over every val pair
MODEL_KEYS = ("kind", "width", "depth")
TRAIN_KEYS = ("margin", "identities_per_batch", "images_per_identity", "lr", "augment")
DESCRIPTOR_CACHE = Path(".cache/face-descriptors")  # dlib descriptors by chip hash (components/face/backbone.py)


def trial_code() -> tuple[Path, ...]:
    from components import precision
    from components.face import backbone, encoder, training, triplet, verification
    from components.tasks.face import data
    modules = (backbone, encoder, training, triplet, verification, data, precision)
    return (*(Path(m.__file__) for m in modules), Path(__file__))


def search_space(space) -> dict:
    from ray import tune

    return {"kind": tune.choice(space.kind), "width": tune.choice(space.width), "depth": tune.choice(space.depth),
            "margin": tune.uniform(*space.margin), "identities_per_batch": tune.choice(space.identities_per_batch),
            "images_per_identity": tune.choice(space.images_per_identity), "lr": tune.loguniform(*space.lr),
            "augment": tune.uniform(*space.augment)}


def study_prefix(p) -> str:
    return "face"


def trial_identity(p) -> dict:
    return {"model": p.model.model_dump(exclude=set(MODEL_KEYS)), "target_far": p.evaluate.target_far,
            "train": p.train.model_dump(exclude={*TRAIN_KEYS, "max_epochs", "patience", "threads"})}


def build(p, model_overrides: dict | None = None):
    """The encoder of face.model with the tuned keys laid over it. The space's width/depth are the cnn's;
    a dlib_head takes 8 x width hidden units and depth - 3 hidden layers (at least 0)."""
    from components.face.encoder import EncoderConfig, build_encoder

    m = {**p.model.model_dump(), **(model_overrides or {})}
    if model_overrides and m["kind"] == "dlib_head":
        m["width"], m["depth"] = 8 * m["width"], max(0, m["depth"] - 3)
    return build_encoder(EncoderConfig.from_params(p.model, **m), seed=p.seed)


def _train(p, model, data_dir, train_ids, val_ids, overrides: dict, threads: int, on_epoch):
    from components.face.training import fit as fit_model
    from components.tasks.face.data import split_arrays

    train_x, train_y = split_arrays(data_dir, train_ids)
    val_x, val_y = split_arrays(data_dir, val_ids)
    t = p.train.model_copy(update=overrides)
    cache = DESCRIPTOR_CACHE if model.cfg.kind == "dlib_head" else None
    return fit_model(model, model.inputs(train_x, cache, progress=True, workers=threads), train_y,
                     model.inputs(val_x, cache, workers=threads), val_y, t, p.evaluate.target_far, p.seed, threads,
                     on_epoch)


def fit_trial(p, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str], on_epoch) -> None:
    model = build(p, chosen["model"])
    _train(p, model, Path(data_dir), train_ids, val_ids,
           {**chosen["train"], "max_epochs": p.tune.max_epochs, "patience": p.tune.max_epochs}, 1, on_epoch)


def fit(p, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    from components.split import read_split

    model = build(p, tuned.get("model"))
    threads = p.train.threads or len(os.sched_getaffinity(0))
    train_ids, val_ids = read_split(split_dir, "train"), read_split(split_dir, "val")
    c = model.cfg
    print(f"training a {c.kind} encoder (width {c.width}, depth {c.depth}) with the triplet loss on "
          f"{len(train_ids)} faces, validating on {len(val_ids)}; {p.train.max_epochs} epochs at most, "
          f"{resolve(p.train.precision)}", flush=True)
    result = _train(p, model, data_dir, train_ids, val_ids, tuned.get("train") or {}, threads, on_epoch)
    result.threads = threads
    model.metadata["precision"] = result.precision
    result.best_epoch = max(result.best_epoch, 1)
    return model, result


def save_model(model, path: Path) -> None:
    from components.face.encoder import save_encoder
    save_encoder(model, path)


def train_summary(model, best: dict) -> dict:
    parameters = sum(t.numel() for t in model.parameters())
    return {"val_tar": round(best["val_tar"], 4), "active_share": round(best["active_share"], 4),
            "spread": round(best["spread"], 4), "parameters": parameters, "size_kb": round(parameters * 4 / 1024, 1),
            "precision": model.metadata["precision"]}
