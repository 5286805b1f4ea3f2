"""Day-night, judging side: calibrated evaluation and the registry gate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.config import DayNightParams
from components.tasks.day_night.data import load_dataset, split_arrays

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
    figures.plot_gallery(test_x[worst], [f"is {'night' if test_y[i] else 'day'}: P(night) {p_test[i]:.2f}, {condition[i]}"
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
