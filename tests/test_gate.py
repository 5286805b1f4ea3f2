"""The promotion gate: its noise statistics on hand-built cases, the fixed gate sets (fixed by
their own seed, never by the pipeline's), and decisions on real models' real figures."""
import contextlib
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from components import gate_data
from components.audio import detection as det
from components.config import load_params
from components.gate import bootstrap_interval, difference_interval, poisson_interval, wilson_interval
from components.tasks.day_night import TASK as dn_task
from components.tasks.trigger_word import TASK as tw_task
from conftest import DAY_NIGHT_TINY, TINY, classifier_config, train_params, write_params

# --------------------------------------------------------------------------- statistics


def test_wilson_interval_matches_the_textbook_values():
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # no misses still bounds the rate
    assert wilson_interval(10, 10)[0] == pytest.approx(1 - 0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing measured, nothing known
    fractional = wilson_interval(12.5, 50)  # an interpolated count lies between its neighbours
    assert wilson_interval(12, 50)[0] < fractional[0] < wilson_interval(13, 50)[0]
    assert wilson_interval(12, 50)[1] < fractional[1] < wilson_interval(13, 50)[1]
    wide, narrow = wilson_interval(30, 100), wilson_interval(300, 1000)
    assert narrow[0] > wide[0] and narrow[1] < wide[1]
    assert wilson_interval(30, 100, confidence=0.99)[1] > wide[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_difference_interval_is_newcombes_and_one_extra_miss_never_clears_it():
    # Newcombe (1998), method 10: 56/70 - 48/80 = 0.2, interval 0.0524 to 0.3339
    assert difference_interval(56 / 70, wilson_interval(56, 70), 48 / 80, wilson_interval(48, 80)) == \
        pytest.approx((0.0524, 0.3339), abs=1e-4)
    n = 818  # the default gate set's trigger words: a miss more or less is always within the noise,
    for k in range(n):  # at every FRR, the edges included
        assert difference_interval(k / n, wilson_interval(k, n), (k + 1) / n, wilson_interval(k + 1, n))[1] >= 0
    assert difference_interval(200 / n, wilson_interval(200, n), 260 / n, wilson_interval(260, n))[1] < 0  # 60 are not


def test_poisson_interval_matches_the_exact_garwood_values():
    assert poisson_interval(0) == pytest.approx((0.0, 3.689), abs=1e-3)
    assert poisson_interval(1) == pytest.approx((0.0253, 5.572), abs=1e-3)
    assert poisson_interval(10) == pytest.approx((4.795, 18.39), abs=1e-2)
    with pytest.raises(ValueError):
        poisson_interval(-1)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(0).normal(3.0, 1.0, 400)
    low, high = bootstrap_interval(np.mean, (values,), seed=1)
    assert (low, high) == bootstrap_interval(np.mean, (values,), seed=1)
    assert low < values.mean() < high and high - low == pytest.approx(2 * 1.96 / 20, rel=0.2)
    assert bootstrap_interval(np.mean, (np.full(50, 2.0),)) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_interval(np.mean, (values, values[:10]))


def test_frr_at_an_fa_rate_reads_the_best_curve_point_and_interpolates():
    curve = det.DetCurve(np.array([0.2, 0.4, 0.5, 0.8]), np.array([0.1, 0.5, 0.3, 0.6]),
                         np.array([4.0, 2.0, 1.0, 0.0]), n_triggers=10, hours=1.0)
    assert det.frr_at_fa_per_hour(curve, 0.0) == pytest.approx(0.6)
    assert det.frr_at_fa_per_hour(curve, 0.5) == pytest.approx(0.45)  # between (0, 0.6) and (1, 0.3)
    assert det.frr_at_fa_per_hour(curve, 2.0) == pytest.approx(0.3 - 0.2 / 3)  # (2, 0.5) is beaten by (1, 0.3)
    assert det.frr_at_fa_per_hour(curve, 1.0) == pytest.approx(0.3)  # a front point is read as it is
    assert det.frr_at_fa_per_hour(curve, 10.0) == pytest.approx(0.1)
    never_quiet = det.DetCurve(np.array([0.9]), np.array([0.5]), np.array([1.0]), n_triggers=10, hours=1.0)
    assert det.frr_at_fa_per_hour(never_quiet, 0.5) == pytest.approx(0.75)  # half way to "never fire"


# ---------------------------------------------------------------------------- gate sets

# Few renders (22) so that a fresh gate seed costs a second of TTS.
SMALL_GATE = {**TINY, "speech": {"trigger_renders": 8, "random_negative_words": 4, "renders_per_negative_word": 1,
                                 "confusables": [], "auto_confusables": 0},
              "gate": {"positive_clips": 4, "negative_hours": 0.02}}


def _make_gate(tmp_path, workdir, name, changes, pipeline="trigger-word", day_night=None):
    params = load_params(write_params(tmp_path / f"{name}.yaml", changes, day_night))
    with contextlib.chdir(workdir):
        return gate_data.run(pipeline, getattr(params, pipeline.replace("-", "_")), tmp_path / name / "gate")


def test_trigger_word_gate_set_depends_on_its_seed_only(tmp_path, gate_workdir):
    base = _make_gate(tmp_path, gate_workdir, "base", SMALL_GATE)
    other_training = _make_gate(tmp_path, gate_workdir, "other", {
        **SMALL_GATE, "seed": 7, "clips": {"main": 999, "unseen_voice": 5},
        "negative_stream": {"minutes": 30.0, "groups": 3}, "generate": {"groups": 20, "workers": 1}})
    assert other_training["gate_hash"] == base["gate_hash"]  # another training seed meets the same set
    reseeded = _make_gate(tmp_path, gate_workdir, "reseeded", {**SMALL_GATE, "gate": {**SMALL_GATE["gate"], "seed": 2}})
    assert reseeded["gate_hash"] != base["gate_hash"]

    gate = tmp_path / "base" / "gate"
    assert json.loads((gate / "gate.json").read_text()) == {k: v for k, v in base.items() if k != "seconds"}
    manifest = pd.read_csv(gate / "manifest.csv")
    negatives, positives = manifest[manifest.subset == "gate_negative"], manifest[manifest.subset == "gate_positive"]
    assert len(positives) == 4 and (positives.n_triggers >= 1).all() and (negatives.n_triggers == 0).all()
    assert base["trigger_occurrences"] == positives.n_triggers.sum()
    assert base["negative_hours"] == pytest.approx(negatives.duration_s.sum() / 3600, abs=1e-3)
    assert negatives.duration_s.sum() >= 0.02 * 3600
    for row in manifest.itertuples():
        info = sf.info(str(gate / row.file))
        assert info.samplerate == 16000 and info.duration == pytest.approx(row.duration_s)
    assert gate_data.content_hash(gate) == base["gate_hash"]


def test_trigger_word_gate_renders_are_fresh_voices_even_with_the_training_seed():
    from components.tasks.trigger_word.generate import render_plan
    from components.tasks.trigger_word.data import gate_render_plan

    p = load_params().trigger_word
    same = p.model_copy(update={"seed": p.gate.seed})
    gate_voices = {job.cache_key for job in gate_render_plan(same)}
    assert len(gate_voices) == len(gate_render_plan(same))
    assert not gate_voices & {job.cache_key for job in render_plan(same)[0]}


def test_day_night_gate_set_depends_on_its_seed_only_and_holds_no_training_image(tmp_path, gate_workdir):
    from components.vision import scenes

    small = {"gate": {"images": 120}}
    base = _make_gate(tmp_path, gate_workdir, "base", TINY, "day-night", small)
    other = _make_gate(tmp_path, gate_workdir, "other", TINY, "day-night",
                       {**small, "seed": 5, "generate": {"images": 999}})
    reseeded = _make_gate(tmp_path, gate_workdir, "reseeded", TINY, "day-night", {"gate": {"images": 120, "seed": 2}})
    assert other["gate_hash"] == base["gate_hash"] != reseeded["gate_hash"]
    assert base["images"] == 120 and 0.45 <= base["night_share"] <= 0.55

    p = load_params(tmp_path / "base.yaml").day_night
    gate_images = np.load(tmp_path / "base" / "gate" / "images.npy")
    cfg = scenes.SceneConfig.from_params(p)
    training, _ = scenes.generate(cfg, p.gate.seed, 120)  # a dataset with the gate's own seed
    assert not {im.tobytes() for im in gate_images} & {im.tobytes() for im in training}


# -------------------------------------------------- trigger word: decisions, real models

@pytest.fixture(scope="module")
def tw(tiny_params_file, tiny_gate, tiny_detectors):
    """The tiny params, and a function: gate figures of one of the tiny detectors, optionally
    with its operating settings changed (what a differently picked threshold would give)."""
    p, known = load_params(tiny_params_file).trigger_word, {}

    def figures(name: str, **settings) -> dict:
        key = (name, *sorted(settings.items()))
        if key not in known:
            model = tw_task.load_evaluated(str(tiny_detectors[name]))
            if settings:
                model.set_detection_config(dataclasses.replace(model.detection_config(), **settings))
            known[key] = tw_task.gate_figures(model, p, tiny_gate)
        return known[key]
    return p, figures


def test_gate_figures_use_the_models_own_settings_and_name_the_gate_set(tw, tiny_gate, tiny_detectors):
    p, figures = tw
    own = figures("trained")
    model = tw_task.load_evaluated(str(tiny_detectors["trained"]))
    assert own["threshold"] == round(model.threshold, 5)
    assert own["smoothing_steps"] == model.detection_config().smoothing_steps
    assert own["gate_hash"] == json.loads((tiny_gate / "gate.json").read_text())["gate_hash"]
    assert own["frr_at_target_low"] <= own["frr_at_target"] <= own["frr_at_target_high"]
    assert own["fa_per_hour_low"] <= own["fa_per_hour"] <= own["fa_per_hour_high"]
    scalars = {k: v for k, v in own.items() if not isinstance(v, list)}
    assert set(own) - set(scalars) == {"det"} and json.loads(json.dumps(own)) == own
    # the threshold moves what users get, never the comparison's figure
    stricter = figures("trained", threshold=0.999)
    assert stricter["frr_at_target"] == own["frr_at_target"] and stricter["threshold"] == 0.999


def test_first_version_is_champion_and_the_note_says_it_misses_the_target(tw):
    p, figures = tw
    decision = tw_task.decide(figures("untrained"), None, p)
    assert decision.promote and "no champion yet" in decision.reason
    assert not decision.meets_target and "does NOT meet the target" in decision.target_note


def test_a_better_model_wins_even_against_a_champion_with_zero_false_accepts(tw):
    """The issue's case: the old champion's threshold sits so high it never false-accepts;
    at the same operating point the better model's FRR is lower beyond the noise."""
    p, figures = tw
    # the trained model at a looser threshold than its own (interpolated on val, it may never false-accept here)
    champion, challenger = figures("untrained", threshold=0.9999), figures("trained", threshold=0.8)
    assert champion["fa_per_hour"] == 0 < challenger["fa_per_hour"]
    decision = tw_task.decide(challenger, champion, p)
    assert decision.promote and "beats champion" in decision.reason, decision.reason


def test_an_equal_model_does_not_win(tw, tiny_gate, tiny_detectors):
    p, figures = tw
    again = tw_task.gate_figures(tw_task.load_evaluated(str(tiny_detectors["trained"])), p, tiny_gate)
    assert again == figures("trained")  # scoring is deterministic: the same model scores the same
    decision = tw_task.decide(again, figures("trained"), p)
    assert not decision.promote and "not lower beyond noise" in decision.reason
    assert decision.target_note.startswith("champion (the current champion, kept)")


def test_a_worse_model_never_wins_even_when_its_threshold_flatters_it(tw):
    p, figures = tw
    champion, challenger = figures("trained", threshold=0.5), figures("untrained", threshold=0.9999)
    assert challenger["fa_per_hour"] < champion["fa_per_hour"]  # the figure that looks better
    decision = tw_task.decide(challenger, champion, p)
    assert not decision.promote and "FRR not lower" in decision.reason


def test_a_better_model_whose_own_threshold_floods_users_with_false_accepts_does_not_win(tw):
    p, figures = tw
    own = figures("trained")
    flooding = max(r["threshold"] for r in own["det"] if r["fa_per_hour"] >= 3 * p.gate.target_fa_per_hour)
    challenger, champion = figures("trained", threshold=flooding), figures("untrained")
    assert tw_task.decide(figures("trained"), champion, p).promote  # at its own threshold it would win
    decision = tw_task.decide(challenger, champion, p)
    assert not decision.promote and "FA/h worse beyond noise" in decision.reason


def test_figures_from_another_gate_set_never_promote(tw):
    p, figures = tw
    decision = tw_task.decide(figures("trained"), {**figures("untrained"), "gate_hash": "elsewhere"}, p)
    assert not decision.promote and "same gate set" in decision.reason


# ---------------------------------------------------- day-night: decisions, real models

@pytest.fixture(scope="module")
def dn(tmp_path_factory, gate_workdir):
    """Tiny params with a 300-image gate set, and the figures of three real classifiers:
    "trained" (an MLP trained for seconds), "underconfident" (the same weights at 20 times its
    temperature: the same ranking and decisions, but close to 50/50 about everything) and
    "untrained" (its initial weights), the first and the last calibrated on val."""
    from components.vision import scenes
    from components.vision.evaluation import fit_temperature
    from components.vision.model import build_classifier
    from components.vision.training import fit

    root = tmp_path_factory.mktemp("day-night-gate")
    p = load_params(write_params(root / "params.yaml", TINY, {**DAY_NIGHT_TINY, "gate": {"images": 300}})).day_night
    with contextlib.chdir(gate_workdir):
        gate_data.run("day-night", p, root / "gate")
    images, frame = scenes.generate(scenes.SceneConfig.from_params(p), p.seed, 1200)
    labels = (frame["label"] == "night").to_numpy().astype(np.int64)
    (train_x, val_x), (train_y, val_y) = np.split(images, [1000]), np.split(labels, [1000])
    trained, untrained, underconfident = (build_classifier(classifier_config(hidden=(16,)), seed=0) for _ in range(3))
    fit(trained, train_x, train_y, val_x, val_y, train_params("day_night", lr=3e-3, lr_decay=0.0, max_epochs=15,
                                                              patience=15), seed=0, backend="torch")
    underconfident.load_state_dict(trained.state_dict())
    for model in (trained, untrained):  # calibrated on val, as the evaluate stage does
        model.temperature = fit_temperature(model.predict_logits(val_x), val_y)
    underconfident.temperature = trained.temperature * 20
    models = {"trained": trained, "underconfident": underconfident, "untrained": untrained}
    return p, {name: dn_task.gate_figures(m, p, root / "gate") for name, m in models.items()}


def _gate(p, **changes):
    return p.model_copy(update={"gate": p.gate.model_copy(update=changes)})


def test_day_night_figures_carry_intervals_and_the_gate_hash(dn):
    p, figures = dn
    f = figures["trained"]
    assert f["images"] == 300 and len(f["gate_hash"]) == 64
    for metric in ("accuracy", "roc_auc", "ece", "log_loss"):
        assert f[f"{metric}_low"] <= f[metric] <= f[f"{metric}_high"], metric
    assert f["accuracy"] > figures["untrained"]["accuracy"] + 0.1
    under = figures["underconfident"]
    assert under["accuracy"] == f["accuracy"] and under["roc_auc"] == f["roc_auc"]
    assert under["ece"] > f["ece"] + 0.2


def test_day_night_better_wins_equal_does_not_and_first_is_champion(dn):
    p, figures = dn
    assert dn_task.decide(figures["untrained"], None, p).promote
    better = dn_task.decide(figures["trained"], figures["untrained"], p)
    assert better.promote and "beats champion" in better.reason
    equal = dn_task.decide(figures["trained"], figures["trained"], p)
    assert not equal.promote and "not better beyond noise" in equal.reason
    assert not dn_task.decide(figures["untrained"], figures["trained"], p).promote


def test_day_night_never_promotes_worse_calibration_or_accuracy_whatever_the_metric_says(dn):
    p, figures = dn
    # ROC AUC is better, but ECE is worse beyond the tolerance
    decision = dn_task.decide(figures["underconfident"], figures["untrained"], p)
    assert not decision.promote and "ECE worse" in decision.reason
    assert dn_task.decide(figures["underconfident"], figures["untrained"], _gate(p, ece_tolerance=1.0)).promote
    # ECE (the gate metric here) is better beyond noise, but accuracy is far worse
    by_ece = _gate(p, metric="ece")
    assert figures["untrained"]["ece"] < figures["underconfident"]["ece"]
    decision = dn_task.decide(figures["untrained"], figures["underconfident"], by_ece)
    assert not decision.promote and "accuracy worse" in decision.reason


def test_day_night_target_note_is_loud_about_the_resulting_champion(dn):
    p, figures = dn
    kept = dn_task.decide(figures["untrained"], figures["trained"], _gate(p, target_accuracy=1.0))
    assert not kept.meets_target and "current champion, kept" in kept.target_note and "WARNING" in kept.target_note
    met = dn_task.decide(figures["trained"], None, _gate(p, target_accuracy=0.5))
    assert met.meets_target and "meets the target" in met.target_note



def test_gate_params_are_strict_and_the_old_margins_are_gone(tmp_path):
    from components.config import ParamsError

    for section, change in (("trigger_word", {"min_frr_improvement": 0.0}), ("trigger_word", {"seed": "1"}),
                            ("trigger_word", {"negative_hours": 0.0}), ("day_night", {"min_improvement": 0.0}),
                            ("day_night", {"ece_tolerance": 2.0})):
        tw_changes, dn_changes = ({"gate": change}, None) if section == "trigger_word" else ({}, {"gate": change})
        with pytest.raises(ParamsError, match=f"{section}.gate.{next(iter(change))}"):
            load_params(write_params(tmp_path / "params.yaml", tw_changes, dn_changes))
