"""Day-night, model side: the notes' hyperparameters as a search space, trials and the
final training (torch, or the from-scratch NumPy network for the MLP)."""
from __future__ import annotations

import os
from pathlib import Path

from components.config import DayNightParams
from components.tasks.day_night.data import split_arrays

# ------------------------------------------------------------------------- tune and train

SCORE = "val_accuracy"
MODEL_KEYS = ("kind", "depth", "width", "activation", "init", "dropout")
TRAIN_KEYS = ("optimizer", "lr", "batch_size", "weight_decay")


def trial_code() -> tuple[Path, ...]:
    """The code that decides a trial's result: a change to it starts a new study."""
    from components.tasks.day_night import data
    from components.vision import augment, backbone, model, numpy_net, training
    return (*(Path(m.__file__) for m in (model, backbone, numpy_net, training, augment, data)), Path(__file__))


def search_space(space) -> dict:
    """Ray Tune domains: choices for the lists, log-uniform lr and L2, uniform dropout."""
    from ray import tune

    return {"kind": tune.choice(space.kind), "depth": tune.choice(space.depth), "width": tune.choice(space.width),
            "activation": tune.choice(space.activation), "init": tune.choice(space.init),
            "dropout": tune.uniform(*space.dropout), "optimizer": tune.choice(space.optimizer),
            "lr": tune.loguniform(*space.lr), "batch_size": tune.choice(space.batch_size),
            "weight_decay": tune.loguniform(*space.weight_decay)}


def study_prefix(p: DayNightParams) -> str:
    return "day-night"


def trial_identity(p: DayNightParams) -> dict:
    return {"image_size": p.image_size, "model": p.model.model_dump(exclude=set(MODEL_KEYS)),
            "train": p.train.model_dump(include={"lr_decay"})}


def build(p: DayNightParams, model_overrides: dict | None = None):
    """The classifier of params.yaml's `model` section, with the tuned keys laid over it."""
    from components.vision.model import ClassifierConfig, build_classifier

    return build_classifier(ClassifierConfig.from_params(p, **(model_overrides or {})), seed=p.seed)


def train_config(p: DayNightParams, overrides: dict | None = None):
    """params.yaml's train section with `overrides` laid over it (validated), threads 0 resolved
    to one per core; the trainer takes it with the seed, p.seed, and `backend`'s choice."""
    from components.config import DayNightTrain

    t = DayNightTrain.model_validate({**p.train.model_dump(), **(overrides or {})})
    return t.model_copy(update={"threads": t.threads or len(os.sched_getaffinity(0))})


def backend(p: DayNightParams, kind: str) -> str:
    """The numpy backend trains MLPs; a tuned CNN trains with torch whatever model.backend says."""
    return p.model.backend if kind == "mlp" else "torch"


def fit_trial(p: DayNightParams, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
              on_epoch) -> None:
    from components.vision.training import fit as fit_model

    budget = p.tune
    model = build(p, chosen["model"])
    cfg = train_config(p, {**chosen["train"], "max_epochs": budget.max_epochs, "patience": budget.max_epochs,
                           "threads": 1})
    fit_model(model, *split_arrays(data_dir, train_ids), *split_arrays(data_dir, val_ids), cfg, seed=p.seed,
              backend=backend(p, model.cfg.kind), on_epoch=on_epoch)


def fit(p: DayNightParams, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    from components.split import read_split
    from components.vision.training import fit as fit_model

    model = build(p, tuned.get("model"))
    cfg, chosen_backend = train_config(p, tuned.get("train")), backend(p, model.cfg.kind)
    train_x, train_y = split_arrays(data_dir, read_split(split_dir, "train"))
    val_x, val_y = split_arrays(data_dir, read_split(split_dir, "val"))
    c = model.cfg
    shape = f"mlp {'-'.join(map(str, (train_x[0].size, *c.hidden, 1)))}" if c.kind == "mlp" else \
        f"cnn {'/'.join(map(str, c.cnn_channels))}"
    print(f"training a {shape} ({c.activation}, {c.init} init; {cfg.optimizer}, lr {cfg.lr:.2g}, {chosen_backend}) "
          f"on {len(train_x)} images, validating on {len(val_x)}; {cfg.max_epochs} epochs at most, "
          f"{cfg.threads} threads", flush=True)
    result = fit_model(model, train_x, train_y, val_x, val_y, cfg, seed=p.seed, backend=chosen_backend,
                       on_epoch=on_epoch)
    result.best_epoch = max(result.best_epoch, 1)  # 0: no epoch beat the initial weights; report the first
    return model, result


def save_model(model, path: Path) -> None:
    from components.vision.model import save_classifier
    save_classifier(model, path)


def train_summary(model, best: dict) -> dict:
    parameters = sum(t.numel() for t in model.parameters())
    return {"val_loss": round(best["val_loss"], 5), "val_accuracy": round(best["val_accuracy"], 4),
            "parameters": parameters, "size_kb": round(parameters * 4 / 1024, 1)}
