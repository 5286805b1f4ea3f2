"""Day-night, judging side: calibrated evaluation and the registry gate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.config import DayNightParams
from components.gate import GateDecision, difference_interval, gate_decision
from components.tasks.day_night.data import HARD_CASES, SPLITS, load_dataset, split_arrays

# ------------------------------------------------------------------------------ evaluate

EVALUATED_FILE = "classifier.pt"  # the model with its temperature and threshold (components/classify.py)


def evaluate(p: DayNightParams, data_dir: Path, split_dir: Path, model_path: Path, evaluated_out: Path,
             out: Path) -> tuple[dict, dict]:
    """Calibrates on val (temperature scaling, when evaluation.calibration says so), then on
    test: accuracy, ROC AUC, precision/recall/F1, log loss, Brier score, ECE before and after
    calibration, the confusion matrix, figures by scene condition, and the plots:
    reliability.png, pr_threshold.png, roc.png, confusion.png, errors.png (the most confident
    mistakes) and predictions.csv (one row per test image, for `dvc plots`). On every split
    (train, val, test, test_unseen_style) the model next to the brightness baseline (a
    mean-brightness threshold fitted on train), with the hard cases per condition:
    metrics["splits"] and splits.csv."""
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

    splits = compare_with_baseline(model, p, data_dir, split_dir, manifest)
    metrics["splits"] = splits
    unseen = splits.get("test_unseen_style")
    headline.update({
        "accuracy_unseen_style": unseen["model"]["accuracy"] if unseen else None,
        "brightness_accuracy_test": splits["test"]["brightness"]["accuracy"],
        "brightness_accuracy_unseen_style": unseen["brightness"]["accuracy"] if unseen else None,
        "worst_margin_over_brightness": min(s["model"]["accuracy"] - s["brightness"]["accuracy"] for s in splits.values())})
    pd.DataFrame([{"split": name, "model": who, **{k: v for k, v in row.items() if k != "by_condition"},
                   **{f"accuracy_{c}": row["by_condition"].get(c) for c in HARD_CASES}}
                  for name, both in splits.items() for who, row in both.items()]).to_csv(out / "splits.csv", index=False)
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


def compare_with_baseline(model, p: DayNightParams, data_dir: Path, split_dir: Path, manifest: pd.DataFrame) -> dict:
    """Per split: {"model": figures, "brightness": figures}, each accuracy, ROC AUC, ECE, images
    and by_condition (the hard cases' accuracy); the baseline's threshold is fitted on train.
    An empty split (no held-out style for user photos) is left out."""
    from components.split import read_split
    from components.vision import brightness
    from components.vision import evaluation as ev

    e, conditions = p.evaluation, manifest.set_index("image_id")["condition"]
    cut = brightness.fit_threshold(*split_arrays(data_dir, read_split(split_dir, "train")))

    def row(y, prob, condition) -> dict:
        m = ev.classification_metrics(y, prob, e.threshold, e.ece_bins)
        groups = ev.metrics_by_group(y, prob, condition, e.threshold, e.ece_bins)
        return {"images": len(y), "accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "ece": m["ece"],
                "by_condition": {c: groups[c]["accuracy"] for c in HARD_CASES if c in groups}}

    out = {}
    for name in SPLITS:
        ids = read_split(split_dir, name)
        if not ids:
            continue
        x, y = split_arrays(data_dir, ids)
        condition = conditions.loc[ids].to_numpy()
        out[name] = {"model": row(y, model.predict_proba(x), condition),
                     "brightness": row(y, brightness.p_night(x, cut), condition)}
        out[name]["brightness"]["threshold_brightness"] = round(cut, 3)
    return out


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


def gate_figures(model, p: DayNightParams, gate_dir: Path) -> dict:
    """A classifier's figures on the gate set (stage gate_data), at its own temperature and
    threshold: every gate metric with its interval at gate.confidence (`<metric>_low`,
    `<metric>_high`: Wilson for accuracy, a seeded bootstrap over the images for the others),
    meets_target (accuracy >= gate.target_accuracy), gate_hash, images."""
    from sklearn.metrics import roc_auc_score

    from components.gate import bootstrap_interval, wilson_interval
    from components.gate_data import read_gate_info
    from components.vision import evaluation as ev

    g, bins = p.gate, p.evaluation.ece_bins
    info = read_gate_info(gate_dir)
    images, manifest = load_dataset(Path(gate_dir))
    y = (manifest["label"].to_numpy() == "night").astype(np.int64)
    prob = model.predict_proba(np.asarray(images))
    m = ev.classification_metrics(y, prob, model.threshold, bins)
    statistic = {"roc_auc": lambda t, q: roc_auc_score(t, q) if 0 < t.sum() < len(t) else float("nan"),
                 "ece": lambda t, q: ev.expected_calibration_error(t, q, bins), "log_loss": ev.log_loss}
    figures = {"gate_hash": info["gate_hash"], "images": len(y), "threshold": model.threshold,
               "temperature": round(model.temperature, 5)}
    for metric in HIGHER_IS_BETTER:
        if metric == "accuracy":
            low, high = wilson_interval(m["confusion"]["tp"] + m["confusion"]["tn"], len(y), g.confidence)
        else:
            low, high = bootstrap_interval(statistic[metric], (y, prob), g.confidence, seed=g.seed)
        figures.update({metric: m[metric], f"{metric}_low": round(low, 5), f"{metric}_high": round(high, 5)})
    return {**figures, "meets_target": meets_target(figures, p)}


def meets_target(figures: dict, p: DayNightParams) -> bool:
    """The quality floor: gate accuracy at least gate.target_accuracy."""
    return bool(figures["accuracy"] >= p.gate.target_accuracy)


def decide(challenger: dict, champion: dict | None, p: DayNightParams) -> GateDecision:
    """The promotion gate on two classifiers' gate_figures (same gate set, scored now):
    - no champion yet: the challenger takes it, whatever it scores, so the product works;
    - never a model whose accuracy is lower, or ECE higher, than the champion's by more than
      gate.accuracy_tolerance / gate.ece_tolerance, whatever the gate metric says;
    - gate.metric decides, in its direction, beyond the noise: the interval of the difference
      of the two figures (from both figures' intervals) must lie wholly on the better side of
      zero (an equal model never wins).
    The note says loudly whether the resulting champion reaches gate.target_accuracy."""
    g, new, old = p.gate, challenger, champion

    def decision(promote: bool, reason: str) -> GateDecision:
        return gate_decision(promote, reason, new, old, lambda f: meets_target(f, p),
                             lambda f: f"gate accuracy {f['accuracy']:.4f}", f"accuracy >= {g.target_accuracy:g}")

    if old is None:
        return decision(True, f"first version, no champion yet: accuracy {new['accuracy']:.4f}")
    if new["gate_hash"] != old["gate_hash"]:
        return decision(False, "kept champion: the two were not measured on the same gate set")
    metric, higher = g.metric, HIGHER_IS_BETTER[g.metric]
    if new[metric] is None or old[metric] is None:
        return decision(False, f"kept champion ({metric} undefined on the gate set)")
    low, high = difference_interval(new[metric], (new[f"{metric}_low"], new[f"{metric}_high"]),
                                    old[metric], (old[f"{metric}_low"], old[f"{metric}_high"]))
    figures = (f"{metric} {new[metric]:.5f} vs {old[metric]:.5f} (difference in [{low:+.5f}, {high:+.5f}]); "
               f"accuracy {new['accuracy']:.4f} vs {old['accuracy']:.4f}, ECE {new['ece']:.4f} vs {old['ece']:.4f}")
    if new["accuracy"] < old["accuracy"] - g.accuracy_tolerance:
        return decision(False, f"kept champion (accuracy worse beyond tolerance): {figures}")
    if new["ece"] > old["ece"] + g.ece_tolerance:
        return decision(False, f"kept champion (ECE worse beyond tolerance): {figures}")
    if not (low > 0 if higher else high < 0):
        return decision(False, f"kept champion ({metric} not better beyond noise): {figures}")
    return decision(True, f"beats champion: {figures}")
