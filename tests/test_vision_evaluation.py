"""Evaluation of the day/night classifier: metric values on hand-built cases, calibration, figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from components.vision import figures
from components.vision.evaluation import (apply_temperature, classification_metrics, expected_calibration_error,
                                          fit_temperature, metrics_by_group, reliability_table, worst_errors)


def _labels_with(n_night: int, n_day: int) -> np.ndarray:
    return np.array([1] * n_night + [0] * n_day)


# --- expected calibration error -------------------------------------------------------------

def test_ece_is_zero_when_every_bin_is_perfectly_calibrated():
    # Ten predictions of P(night) = 0.8 of which 8 are night, ten of 0.2 of which 2 are night:
    # every prediction has confidence 0.8 and exactly 80 % of them are right.
    y = np.concatenate([_labels_with(8, 2), _labels_with(2, 8)])
    p = np.array([0.8] * 10 + [0.2] * 10)
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_single_bin_is_the_gap_between_accuracy_and_confidence():
    # Confidence 0.9 everywhere (p = 0.9 and p = 0.1), 7 of 10 right: |0.7 - 0.9| = 0.2.
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1])
    p = np.array([0.9] * 5 + [0.1] * 5)
    assert expected_calibration_error(y, p) == pytest.approx(0.2)


def test_ece_matches_a_hand_computation_on_two_bins():
    # Bin of confidence 0.65: 4 predictions, 2 right -> gap 0.15, share 0.4.
    # Bin of confidence 0.95: 6 predictions (p = 0.05, day), 5 right -> gap |5/6 - 0.95|, share 0.6.
    y = np.array([1, 1, 0, 0] + [0, 0, 0, 0, 0, 1])
    p = np.array([0.65] * 4 + [0.05] * 6)
    expected = 0.4 * 0.15 + 0.6 * abs(5 / 6 - 0.95)
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    assert expected == pytest.approx(0.13)


def test_reliability_table_lists_every_bin_with_counts_confidence_and_accuracy():
    y = np.array([1, 1, 0, 0] + [0, 0, 0, 0, 0, 1])
    p = np.array([0.65] * 4 + [0.05] * 6)
    table = reliability_table(y, p, bins=10)
    assert len(table) == 10 and sum(r["count"] for r in table) == 10
    assert table[0]["low"] == 0.0 and table[-1]["high"] == 1.0
    by_count = sorted((r for r in table if r["count"]), key=lambda r: r["count"])
    assert [r["count"] for r in by_count] == [4, 6]
    assert by_count[0]["confidence"] == pytest.approx(0.65) and by_count[0]["accuracy"] == pytest.approx(0.5)
    assert by_count[1]["confidence"] == pytest.approx(0.95) and by_count[1]["accuracy"] == pytest.approx(5 / 6)
    assert by_count[0]["low"] < 0.65 <= by_count[0]["high"] and by_count[1]["low"] < 0.95 <= by_count[1]["high"]
    empty = [r for r in table if not r["count"]]
    assert all(r["confidence"] is None and r["accuracy"] is None for r in empty)


@pytest.mark.parametrize("y, p", [([0, 1], [0.5]), ([0, 2], [0.1, 0.9]), ([0, 1], [0.1, 1.2]), ([0, 1], [0.1, np.nan])])
def test_bad_inputs_are_rejected(y, p):
    with pytest.raises(ValueError):
        expected_calibration_error(y, p)


# --- temperature scaling --------------------------------------------------------------------

def _nll(z: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(apply_temperature(z, 1.0), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 20_000)
    y = (rng.random(z.size) < apply_temperature(z, 2.5)).astype(int)
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.10)


def test_fit_temperature_softens_overconfident_logits_and_lowers_their_nll():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0.0, 2.0, 5_000)
    y = (rng.random(true_logits.size) < apply_temperature(true_logits, 1.0)).astype(int)
    overconfident = 4.0 * true_logits
    t = fit_temperature(overconfident, y)
    assert t > 1.5
    assert _nll(overconfident / t, y) < _nll(overconfident, y)


@pytest.mark.parametrize("z, y", [([], []), ([0.3, -2.0, 5.0], [1, 1, 1]), ([1.0, 2.0], [0, 0])])
def test_fit_temperature_leaves_degenerate_input_alone(z, y):
    assert fit_temperature(np.array(z, dtype=float), np.array(y, dtype=int)) == 1.0


def test_apply_temperature_is_a_stable_sigmoid():
    q = apply_temperature(np.array([-1000.0, 0.0, 1000.0, 2.0]), 2.0)
    assert np.allclose(q, [0.0, 0.5, 1.0, 1 / (1 + np.exp(-1.0))])


# --- threshold metrics ----------------------------------------------------------------------

def test_classification_metrics_on_a_hand_built_confusion():
    # tn = 3, fp = 1, fn = 2, tp = 4 at threshold 0.5.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.45, 0.6, 0.8, 0.9, 0.95])
    m = classification_metrics(y, p)
    assert m["confusion"] == {"tn": 3, "fp": 1, "fn": 2, "tp": 4}
    assert m["accuracy"] == 0.7
    assert m["precision"] == 0.8
    assert m["recall"] == round(4 / 6, 5)
    assert m["f1"] == round(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6), 5)
    assert m["n"] == 10 and m["n_night"] == 6
    assert m["brier"] == round(float(np.mean((p - y) ** 2)), 5)
    json.dumps(m)  # plain Python types only
    assert classification_metrics(y, p, threshold=0.42)["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 5}


def test_roc_auc_is_one_for_separable_scores_and_none_for_one_class():
    assert classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])["roc_auc"] == 1.0
    one_class = classification_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert one_class["roc_auc"] is None and one_class["confusion"] == {"tn": 0, "fp": 0, "fn": 1, "tp": 2}


def test_log_loss_is_clipped_and_perfect_predictions_score_zero():
    assert classification_metrics([1, 0], [1.0, 0.0])["log_loss"] == 0.0
    assert classification_metrics([1, 0], [0.0, 1.0])["log_loss"] == pytest.approx(-np.log(1e-7), rel=1e-4)


def test_precision_is_zero_when_nothing_is_called_night():
    m = classification_metrics([0, 1, 1], [0.1, 0.2, 0.3])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


# --- breakdowns and errors ------------------------------------------------------------------

def test_metrics_by_group_splits_by_condition():
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.2, 0.1, 0.3, 0.8])
    groups = np.array(["lit_city_night", "dusk_dawn", "clear_day", "dusk_dawn", "lit_city_night"])
    by_group = metrics_by_group(y, p, groups)
    assert list(by_group) == ["clear_day", "dusk_dawn", "lit_city_night"]
    assert by_group["dusk_dawn"]["n"] == 2 and by_group["dusk_dawn"]["accuracy"] == 0.5
    assert by_group["lit_city_night"] == {"n": 2, "n_night": 2, "accuracy": 1.0,
                                          "ece": round(expected_calibration_error([1, 1], [0.9, 0.8]), 5)}
    assert by_group["clear_day"]["ece"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        metrics_by_group(y, p, groups[:3])


def test_worst_errors_ranks_confident_mistakes_first_and_ignores_correct_ones():
    y = np.array([1, 0, 1, 0, 1, 0])
    p = np.array([0.99, 0.8, 0.05, 0.3, 0.45, 0.01])
    # mistakes: index 1 (day called night, 0.8), 2 (night called day, 0.95), 4 (night called day, 0.55)
    assert worst_errors(y, p).tolist() == [2, 1, 4]
    assert worst_errors(y, p, k=2).tolist() == [2, 1]
    assert worst_errors([1, 0], [0.9, 0.1]).tolist() == []


# --- figures --------------------------------------------------------------------------------

def _is_png(path) -> bool:
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    logits = (2 * y - 1) * 3.0 + rng.normal(0, 2.5, y.size)
    p, p_raw = apply_temperature(logits, 2.0), apply_temperature(logits, 1.0)
    figures.plot_reliability(y, p, tmp_path / "reliability.png", p_uncalibrated=p_raw)
    figures.plot_precision_recall_by_threshold(y, p, tmp_path / "thresholds.png", threshold=0.4)
    figures.plot_roc(y, p, tmp_path / "roc.png")
    figures.plot_confusion(classification_metrics(y, p)["confusion"], tmp_path / "confusion.png")
    images = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    figures.plot_gallery(images, [f"night p=0.{i:02d} dusk_dawn" for i in range(10)], tmp_path / "sub" / "gallery.png")
    for name in ["reliability.png", "thresholds.png", "roc.png", "confusion.png", "sub/gallery.png"]:
        assert _is_png(tmp_path / name), name


def test_plots_survive_degenerate_inputs(tmp_path):
    figures.plot_roc([1, 1, 1], [0.2, 0.7, 0.9], tmp_path / "roc.png")
    figures.plot_confusion({"tn": 0, "fp": 0, "fn": 1, "tp": 2}, tmp_path / "confusion.png")
    figures.plot_gallery(np.zeros((0, 64, 64, 3), np.uint8), [], tmp_path / "gallery.png")
    assert all(_is_png(tmp_path / n) for n in ["roc.png", "confusion.png", "gallery.png"])
    with pytest.raises(ValueError):
        figures.plot_gallery(np.zeros((2, 64, 64, 3), np.uint8), ["one title"], tmp_path / "bad.png")
