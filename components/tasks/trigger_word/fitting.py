"""Trigger word, model side: the search space, trials and the final training."""
from __future__ import annotations

from pathlib import Path

from components.config import TriggerWordParams

# ------------------------------------------------------------------------- tune and train

SCORE = "val_f1"  # frame F1 at 0.5, the figure printed beside the loss
MODEL_KEYS = ("conv_filters", "gru_hidden", "gru_layers", "dropout")  # searched keys, by params section
TRAIN_KEYS = ("lr", "batch_size", "pos_weight")


def trial_code() -> tuple[Path, ...]:
    """The code that decides a trial's result: a change to it starts a new study."""
    from components.audio import features, model, training
    return (*(Path(m.__file__) for m in (features, model, training)), Path(__file__))


def search_space(space) -> dict:
    """Ray Tune domains for every searched key (OptunaSearch converts them)."""
    from ray import tune

    return {"lr": tune.loguniform(*space.lr), "batch_size": tune.choice(space.batch_size),
            "pos_weight": tune.uniform(*space.pos_weight), "conv_filters": tune.choice(space.conv_filters),
            "gru_hidden": tune.choice(space.gru_hidden), "gru_layers": tune.choice(space.gru_layers),
            "dropout": tune.uniform(*space.dropout)}


def study_prefix(p: TriggerWordParams) -> str:
    return p.slug


def trial_identity(p: TriggerWordParams) -> dict:
    """What a trial trains with besides the searched keys and the data."""
    return {"features": p.features.model_dump(), "model": p.model.model_dump(exclude=set(MODEL_KEYS)),
            "train": p.train.model_dump(include={"weight_decay", "lr_schedule"})}


def train_config(p: TriggerWordParams, overrides: dict | None = None):
    import os

    from components.audio.training import TrainConfig

    t = {**p.train.model_dump(), **(overrides or {})}
    threads = t.pop("threads") or len(os.sched_getaffinity(0))
    return TrainConfig(lr=t["lr"], batch_size=t["batch_size"], max_epochs=t["max_epochs"], patience=t["patience"],
                       pos_weight=t["pos_weight"], weight_decay=t["weight_decay"], lr_schedule=t["lr_schedule"],
                       safety_minutes=t["safety_minutes"], num_threads=threads, seed=p.seed)


def build_model(p: TriggerWordParams, model_overrides: dict | None = None):
    import torch

    from components.audio.features import FeatureConfig
    from components.audio.model import ModelConfig, TriggerWordModel

    torch.manual_seed(p.seed)  # the initial weights are part of the experiment
    model = TriggerWordModel(FeatureConfig(**p.features.model_dump()),
                             ModelConfig(**{**p.model.model_dump(), **(model_overrides or {})}))
    model.metadata = {"word": p.word, "slug": p.slug}
    return model


def fit_trial(p: TriggerWordParams, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
              on_epoch) -> None:
    """Train one configuration on the tune subsets. Trials are ranked by the unweighted BCE:
    train()'s val_loss is weighted by the trial's own pos_weight, which is searched, so
    ranked by it small weights would win by construction."""
    import torch

    from components.audio.training import ClipDataset, evaluate, train

    net = build_model(p, chosen["model"])
    budget = p.tune
    cfg = train_config(p, {**chosen["train"], "max_epochs": budget.max_epochs, "patience": budget.max_epochs,
                           "threads": 1})
    train_ds = ClipDataset(data_dir, train_ids, samples_per_step=net.samples_per_step)
    val_ds = ClipDataset(data_dir, val_ids, samples_per_step=net.samples_per_step)
    plain_bce = torch.nn.BCEWithLogitsLoss()

    def epoch_done(epoch: int, m: dict) -> None:
        on_epoch(epoch, {**m, "val_loss_weighted": m["val_loss"], "val_loss": evaluate(net, val_ds, cfg, plain_bce)["loss"]})
    train(net, train_ds, val_ds, cfg, on_epoch=epoch_done)


def fit(p: TriggerWordParams, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    """The final model: streams batches from the split's WAV files (never all audio at once)."""
    from components.audio.training import ClipDataset, train
    from components.split import read_split

    model = build_model(p, tuned.get("model"))
    cfg = train_config(p, tuned.get("train"))
    train_ds = ClipDataset(data_dir, read_split(split_dir, "train"), samples_per_step=model.samples_per_step)
    val_ds = ClipDataset(data_dir, read_split(split_dir, "val"), samples_per_step=model.samples_per_step)
    print(f"training on {len(train_ds)} clips, validating on {len(val_ds)}; {model.size_bytes() / 1e6:.2f} MB fp32, "
          f"{cfg.max_epochs} epochs at most, {cfg.num_threads} threads", flush=True)
    return model, train(model, train_ds, val_ds, cfg, on_epoch=on_epoch)


def save_model(model, path: Path) -> None:
    from components.audio.model import save_model as save
    save(model, path)


def train_summary(model, best: dict) -> dict:
    return {"val_loss": round(best["val_loss"], 5), "val_frame_f1": round(best["val_f1"], 4),
            "size_kb": round(model.size_bytes() / 1024, 1)}
