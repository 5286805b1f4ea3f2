"""The day-night pipeline's part of the shared stages (components/tasks/__init__.py):
image checks, the stratified 80/20 split, the search space of the notes' hyperparameters,
training (torch, or the from-scratch NumPy network), calibrated evaluation and the
ROC-AUC gate, each adapting the vision domain code (components/vision/) to a stage."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from components import paths
from components.config import DayNightParams
from components.stage_cli import StageError
from components.validate import Check, Table, all_true

LABELS = ("day", "night")

# ------------------------------------------------------------------------------ validate

RAW_DIR = paths.RAW_DAY_NIGHT_DIR


def raw_tables(p: DayNightParams, raw_dir: Path, workers: int = 0) -> list[Table]:
    """Every file under data/raw/day_night/ is a readable image in a day/ or night/ folder,
    big enough to resize. An absent or empty folder passes (the renderer is used)."""
    from components.vision.images import find_user_images, inspect_image

    found = find_user_images(raw_dir) if raw_dir.is_dir() else []
    rows = [{**inspect_image(path), "file": str(path), "label_folder": label} for path, label in found]
    frame = pd.DataFrame(rows, columns=["file", "label_folder", "decodes", "error", "width", "height", "mode"])
    side = p.validation.min_user_image_side
    return [Table("images", frame, "file", [
        all_true("decodes", "readable_image"),
        Check("label_folder", "ExpectColumnValuesToBeInSet", {"column": "label_folder", "value_set": list(LABELS)}),
        Check("min_width", "ExpectColumnValuesToBeBetween", {"column": "width", "min_value": side}),
        Check("min_height", "ExpectColumnValuesToBeBetween", {"column": "height", "min_value": side})])]


def load_dataset(data_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """images uint8 [N, S, S, 3] (memory-mapped) and the manifest, one row per image."""
    try:
        images = np.load(data_dir / "images.npy", mmap_mode="r")
        manifest = pd.read_csv(data_dir / "manifest.csv")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the generated dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    if len(images) != len(manifest) or not {"image_id", "label", "condition", "sha256"} <= set(manifest.columns):
        raise StageError(f"{data_dir}: images.npy ({len(images)} images) and manifest.csv ({len(manifest)} rows, "
                         f"columns {list(manifest.columns)[:6]}) do not belong together; run the generate stage again")
    return images, manifest


def generated_tables(p: DayNightParams, data_dir: Path, workers: int = 0) -> list[Table]:
    """Shape, dtype and value range of every image, not blank, label set, class balance and
    duplicates (by a hash of the pixels)."""
    images, manifest = load_dataset(data_dir)
    flat = images.reshape(len(images), -1)
    frame = pd.DataFrame({
        "image_id": manifest["image_id"], "label": manifest["label"],
        "height": images.shape[1], "width": images.shape[2], "channels": images.shape[3] if images.ndim == 4 else 1,
        "dtype": str(images.dtype), "min": flat.min(axis=1).astype(float), "max": flat.max(axis=1).astype(float),
        "pixel_std": flat.std(axis=1, dtype=np.float64),
        "sha256": [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]})
    frame["is_night"] = (frame["label"] == "night").astype(float)
    v, size = p.validation, p.image_size
    return [Table("images", frame, "image_id", [
        Check("height", "ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [size]}),
        Check("width", "ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [size]}),
        Check("rgb", "ExpectColumnValuesToBeInSet", {"column": "channels", "value_set": [3]}),
        Check("dtype_uint8", "ExpectColumnValuesToBeInSet", {"column": "dtype", "value_set": ["uint8"]}),
        Check("value_range", "ExpectColumnValuesToBeBetween", {"column": "min", "min_value": 0.0}),
        Check("value_range_max", "ExpectColumnValuesToBeBetween", {"column": "max", "max_value": 255.0}),
        Check("not_blank", "ExpectColumnValuesToBeBetween", {"column": "pixel_std", "min_value": v.min_pixel_std}),
        Check("label_set", "ExpectColumnValuesToBeInSet", {"column": "label", "value_set": list(LABELS)}),
        Check("class_balance", "ExpectColumnMeanToBeBetween", {
            "column": "is_night", "min_value": v.min_night_share, "max_value": v.max_night_share}),
        Check("no_duplicates", "ExpectColumnValuesToBeUnique", {"column": "sha256"})])]


# --------------------------------------------------------------------------------- split

ID_COLUMN = "image_id"
SPLITS = ("train", "val", "test")


def assign_splits(manifest: pd.DataFrame, p: DayNightParams) -> pd.Series:
    """Stratified by label and scene condition (each hard case in every split in proportion),
    grouped by the pixels' hash so identical images never straddle two splits."""
    from components.split import deal_folds

    strata = manifest["label"] + "|" + manifest["condition"].astype(str)
    return deal_folds(strata, manifest["sha256"], {"train": p.split.train, "val": p.split.val, "test": p.split.test},
                      p.seed)


def describe_split(rows: pd.DataFrame) -> dict:
    return {"images": len(rows), "night_share": round(float((rows["label"] == "night").mean()), 4) if len(rows) else 0.0,
            "conditions": rows["condition"].value_counts(normalize=True).round(3).sort_index().to_dict()}


def split_arrays(data_dir: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, S, S, 3] in memory, labels 0 = day / 1 = night) of the given ids."""
    images, manifest = load_dataset(Path(data_dir))
    row = pd.Series(np.arange(len(manifest)), index=manifest["image_id"])
    missing = [i for i in ids if i not in row.index]
    if missing:
        raise StageError(f"{data_dir}/manifest.csv: {len(missing)} ids of the split are missing, e.g. {missing[:3]}")
    index = row.loc[ids].to_numpy()
    return np.asarray(images[index]), (manifest["label"].to_numpy()[index] == "night").astype(np.int64)


# ------------------------------------------------------------------------- tune and train

SCORE = "val_accuracy"
MODEL_KEYS = ("kind", "depth", "width", "activation", "init", "dropout")
TRAIN_KEYS = ("optimizer", "lr", "batch_size", "weight_decay")


def _trial_code() -> tuple[Path, ...]:
    from components.vision import model, numpy_net, training
    return tuple(Path(m.__file__) for m in (model, numpy_net, training))


TRIAL_CODE = _trial_code()


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

    m = {**p.model.model_dump(), **(model_overrides or {})}
    cfg = ClassifierConfig(kind=m["kind"], hidden=(m["width"],) * m["depth"], activation=m["activation"],
                           init=m["init"], dropout=m["dropout"], cnn_channels=tuple(m["cnn_channels"]),
                           image_size=p.image_size)
    return build_classifier(cfg, seed=p.seed)


def train_config(p: DayNightParams, kind: str, overrides: dict | None = None):
    """The numpy backend trains MLPs; a tuned CNN trains with torch whatever model.backend says."""
    from components.vision.training import TrainConfig

    t = {**p.train.model_dump(), **(overrides or {})}
    threads = t.pop("threads") or len(os.sched_getaffinity(0))
    return TrainConfig(**t, seed=p.seed, threads=threads, backend=p.model.backend if kind == "mlp" else "torch")


def fit_trial(p: DayNightParams, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
              on_epoch) -> None:
    from components.vision.training import fit as fit_model

    budget = p.tune
    model = build(p, chosen["model"])
    cfg = train_config(p, model.cfg.kind, {**chosen["train"], "max_epochs": budget.max_epochs,
                                           "patience": budget.max_epochs, "max_minutes": budget.trial_minutes,
                                           "threads": 1})
    fit_model(model, *split_arrays(data_dir, train_ids), *split_arrays(data_dir, val_ids), cfg, on_epoch=on_epoch)


def fit(p: DayNightParams, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    from components.split import read_split
    from components.vision.training import fit as fit_model

    model = build(p, tuned.get("model"))
    cfg = train_config(p, model.cfg.kind, tuned.get("train"))
    train_x, train_y = split_arrays(data_dir, read_split(split_dir, "train"))
    val_x, val_y = split_arrays(data_dir, read_split(split_dir, "val"))
    c = model.cfg
    shape = f"mlp {'-'.join(map(str, (train_x[0].size, *c.hidden, 1)))}" if c.kind == "mlp" else \
        f"cnn {'/'.join(map(str, c.cnn_channels))}"
    print(f"training a {shape} ({c.activation}, {c.init} init; {cfg.optimizer}, lr {cfg.lr:.2g}, {cfg.backend}) "
          f"on {len(train_x)} images, validating on {len(val_x)}; {cfg.threads} threads, cap {cfg.max_minutes} min",
          flush=True)
    result = fit_model(model, train_x, train_y, val_x, val_y, cfg, on_epoch=on_epoch)
    result.best_epoch = max(result.best_epoch, 1)  # 0: no epoch beat the initial weights; report the first
    return model, result


def save_model(model, path: Path) -> None:
    from components.vision.model import save_classifier
    save_classifier(model, path)


def train_summary(model, best: dict) -> dict:
    parameters = sum(t.numel() for t in model.parameters())
    return {"val_loss": round(best["val_loss"], 5), "val_accuracy": round(best["val_accuracy"], 4),
            "parameters": parameters, "size_kb": round(parameters * 4 / 1024, 1)}


# ------------------------------------------------------------------------------ evaluate

EVALUATED_FILE = "classifier.pt"  # the model with its temperature and threshold (components/classify.py)


def evaluate(p: DayNightParams, data_dir: Path, split_dir: Path, model_path: Path, evaluated_out: Path,
             out: Path) -> tuple[dict, dict]:
    """Calibrates on val (temperature scaling, when evaluation.calibration says so), then on
    test: accuracy, ROC AUC, precision/recall/F1, log loss, Brier score, ECE before and after
    calibration, the confusion matrix, figures by scene condition, and the plots:
    reliability.png, pr_threshold.png, roc.png, confusion.png, errors.png (the most confident
    mistakes) and predictions.csv (one row per test image, for `dvc plots`)."""
    from components.split import read_split
    from components.vision import evaluation as ev
    from components.vision import figures
    from components.vision.model import load_classifier, save_classifier

    e = p.evaluation
    model = load_classifier(model_path)
    val_x, val_y = split_arrays(data_dir, read_split(split_dir, "val"))
    test_ids = read_split(split_dir, "test")
    test_x, test_y = split_arrays(data_dir, test_ids)
    val_logits, test_logits = model.predict_logits(val_x), model.predict_logits(test_x)
    model.temperature = ev.fit_temperature(val_logits, val_y) if e.calibration == "temperature" else 1.0
    model.threshold = e.threshold
    p_val, p_test = ev.apply_temperature(val_logits, model.temperature), ev.apply_temperature(test_logits, model.temperature)
    p_raw = ev.apply_temperature(test_logits, 1.0)

    test = ev.classification_metrics(test_y, p_test, e.threshold, e.ece_bins)
    _, manifest = load_dataset(data_dir)
    condition = manifest.set_index("image_id").loc[test_ids, "condition"].to_numpy()
    metrics = {"temperature": round(model.temperature, 5), "threshold": e.threshold, "test": test,
               "val": ev.classification_metrics(val_y, p_val, e.threshold, e.ece_bins),
               "test_uncalibrated": ev.classification_metrics(test_y, p_raw, e.threshold, e.ece_bins),
               "test_by_condition": ev.metrics_by_group(test_y, p_test, condition, e.threshold, e.ece_bins)}
    headline = {"accuracy_test": test["accuracy"], "roc_auc_test": test["roc_auc"], "ece_test": test["ece"],
                "ece_test_uncalibrated": metrics["test_uncalibrated"]["ece"], "log_loss_test": test["log_loss"],
                "temperature": metrics["temperature"],
                "worst_condition_accuracy": min(g["accuracy"] for g in metrics["test_by_condition"].values())}

    save_classifier(model, evaluated_out)
    predicted = np.where(p_test >= e.threshold, "night", "day")
    pd.DataFrame({"image_id": test_ids, "actual": np.where(test_y == 1, "night", "day"), "predicted": predicted,
                  "p_night": p_test.round(5), "condition": condition}).to_csv(out / "predictions.csv", index=False)
    figures.plot_reliability(test_y, p_test, out / "reliability.png", e.ece_bins, p_uncalibrated=p_raw)
    figures.plot_precision_recall_by_threshold(test_y, p_test, out / "pr_threshold.png", e.threshold)
    figures.plot_roc(test_y, p_test, out / "roc.png")
    figures.plot_confusion(test["confusion"], out / "confusion.png")
    worst = ev.worst_errors(test_y, p_test, e.gallery, e.threshold)
    figures.plot_gallery(test_x[worst], [f"{'night' if test_y[i] else 'day'} p={p_test[i]:.2f} {condition[i]}"
                                         for i in worst], out / "errors.png")
    return headline, metrics


# ------------------------------------------------------------------------------ register

def registered_name(p: DayNightParams) -> str:
    from components.classify import REGISTERED_NAME
    return REGISTERED_NAME


def version_tags(p: DayNightParams) -> dict:
    return {"image_size": str(p.image_size)}


def load_evaluated(ref: str):
    from components.classify import load_classifier_ref
    return load_classifier_ref(ref)


def log_model(classifier_path: Path):
    from components.registry import log_classifier
    return log_classifier(classifier_path)


HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "ece": False, "log_loss": False}


def gate_figures(model, p: DayNightParams, data_dir: Path, split_dir: Path) -> dict:
    """Every gate metric of a classifier (its own temperature and threshold) on the test split."""
    from components.split import read_split
    from components.vision.evaluation import classification_metrics

    x, y = split_arrays(data_dir, read_split(split_dir, "test"))
    m = classification_metrics(y, model.predict_proba(x), model.threshold, p.evaluation.ece_bins)
    return {**{k: m[k] for k in HIGHER_IS_BETTER}, "threshold": model.threshold,
            "temperature": round(model.temperature, 5)}


def decide(challenger: dict, champion: dict | None, p: DayNightParams) -> tuple[bool, str]:
    """Promote when the gate metric is better by more than gate.min_improvement."""
    if champion is None:
        return True, "no champion yet"
    metric, margin = p.gate.metric, p.gate.min_improvement
    new, old = challenger[metric], champion[metric]
    if new is None or old is None:
        return False, f"kept champion ({metric} undefined on this test data)"
    better = new > old + margin if HIGHER_IS_BETTER[metric] else new < old - margin
    figures = f"{metric} {new:.5f} vs {old:.5f}"
    return (True, f"beats champion: {figures}") if better else (False, f"kept champion ({metric} not better): {figures}")
