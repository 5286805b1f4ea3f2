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
    from components.audio import embedding_cache, embedding_model, features, model, training
    return (*(Path(m.__file__) for m in (features, model, training, embedding_model, embedding_cache)), Path(__file__))


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
    """params.yaml's train section with `overrides` laid over it (validated), threads 0 resolved
    to one per core; the trainer takes it with the seed, p.seed."""
    import os

    from components.config import TrainParams

    t = TrainParams.model_validate({**p.train.model_dump(), **(overrides or {})})
    return t.model_copy(update={"threads": t.threads or len(os.sched_getaffinity(0))})


def build_model(p: TriggerWordParams, model_overrides: dict | None = None):
    import torch

    from components.audio.features import FeatureConfig
    from components.audio.model import ModelConfig, TriggerWordModel

    torch.manual_seed(p.seed)  # the initial weights are part of the experiment
    model_cfg = ModelConfig.from_params(p.model, **(model_overrides or {}))
    if p.features.frontend == "speech_embedding":
        from components.audio.embedding_model import EmbeddingWordModel, HeadConfig
        model = EmbeddingWordModel(HeadConfig.from_params(p.model, dropout=model_cfg.dropout))
    else:
        model = TriggerWordModel(FeatureConfig.from_params(p), model_cfg)
    model.metadata = {"word": p.word, "slug": p.slug}
    return model


def datasets(p: TriggerWordParams, data_dir: Path, model, train_ids: list[str], val_ids: list[str]):
    """(train, val) datasets of what the model reads: waveforms (log-mel) or the cached speech
    embeddings of the trigger_word-features stage, beside the generated data."""
    from components.audio.training import ClipDataset

    if p.features.frontend == "speech_embedding":
        from components.audio.embedding_cache import EmbeddingDataset
        cache = features_dir(data_dir)
        return tuple(EmbeddingDataset(cache, data_dir, ids, p.labels.step_ms) for ids in (train_ids, val_ids))
    return tuple(ClipDataset(data_dir, ids, samples_per_step=model.samples_per_step) for ids in (train_ids, val_ids))


def features_dir(data_dir: Path) -> Path:
    """The trigger_word-features stage's output for a generated dataset: <data>/../features."""
    return Path(data_dir).parent / "features"


def fit_trial(p: TriggerWordParams, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
              on_epoch) -> None:
    """Train one configuration on the tune subsets. Trials are ranked by the unweighted BCE
    (train()'s val_bce): its val_loss is weighted by the trial's own pos_weight, which is
    searched, so ranked by it small weights would win by construction."""
    from components.audio.training import train

    net = build_model(p, chosen["model"])
    budget = p.tune
    cfg = train_config(p, {**chosen["train"], "max_epochs": budget.max_epochs, "patience": budget.max_epochs,
                           "threads": 1})
    train_ds, val_ds = datasets(p, Path(data_dir), net, train_ids, val_ids)

    def epoch_done(epoch: int, m: dict) -> None:
        on_epoch(epoch, {**m, "val_loss_weighted": m["val_loss"], "val_loss": m["val_bce"]})
    train(net, train_ds, val_ds, cfg, p.seed, on_epoch=epoch_done)


def fit(p: TriggerWordParams, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    """The final model: streams batches from the split's WAV files (never all audio at once)."""
    from components.audio.training import train
    from components.split import read_split

    model = build_model(p, tuned.get("model"))
    cfg = train_config(p, tuned.get("train"))
    train_ds, val_ds = datasets(p, data_dir, model, read_split(split_dir, "train"), read_split(split_dir, "val"))
    print(f"training on {len(train_ds)} clips, validating on {len(val_ds)}; {model.size_bytes() / 1e6:.2f} MB fp32, "
          f"{cfg.max_epochs} epochs at most, {cfg.threads} threads", flush=True)
    return model, train(model, train_ds, val_ds, cfg, p.seed, on_epoch=on_epoch)


def save_model(model, path: Path) -> None:
    from components.audio.model import save_model as save
    save(model, path)


def train_summary(model, best: dict) -> dict:
    return {"val_loss": round(best["val_loss"], 5), "val_frame_f1": round(best["val_f1"], 4),
            "size_kb": round(model.size_bytes() / 1024, 1)}
