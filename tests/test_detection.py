"""Detection and event metrics (DESIGN §4): hand-built tracks with known answers."""

import dataclasses
import math
import time

import numpy as np
import pytest

from components.audio.detection import (
    DetCurve,
    Detection,
    DetectionConfig,
    EventCounts,
    StreamingDetector,
    curve_point,
    det_curve_rows,
    detect,
    detection_latencies,
    frame_metrics,
    pick_operating_threshold,
    plot_det_curve,
    refractory_steps,
    score_clip,
    smooth,
    step_time_s,
    sweep_thresholds,
)
from components.config import load_params

STEP = 0.02  # 20 ms output steps
RAW = DetectionConfig(smoothing_steps=1, refractory_s=1.0, threshold=0.5)  # no smoothing
PARAMS = DetectionConfig.from_params(load_params().trigger_word.detection, threshold=0.5)  # smoothing 5, 1 s


def pulse(n, *spans, value=1.0):
    x = np.zeros(n)
    for a, b in spans:
        x[a:b] = value
    return x


# --- smoothing -------------------------------------------------------------------------

def test_smooth_is_causal_moving_average_computed_by_hand():
    got = smooth(np.array([0, 0, 1, 1, 1, 1, 0], float), 3)
    np.testing.assert_allclose(got, [0, 0, 1 / 3, 2 / 3, 1, 1, 2 / 3])


def test_smooth_averages_only_existing_steps_at_the_start():
    np.testing.assert_allclose(smooth(np.array([1.0, 0, 0, 0]), 3), [1, 0.5, 1 / 3, 0])


def test_smooth_window_one_is_identity_and_keeps_length():
    x = np.random.default_rng(0).random(17)
    assert np.array_equal(smooth(x, 1), x)
    assert smooth(x, 9).shape == x.shape
    assert smooth(np.zeros(0), 5).shape == (0,)


def test_smoothing_delays_and_attenuates_detection():
    probs = pulse(100, (40, 50))
    [raw] = detect(probs, STEP, RAW)
    assert raw == Detection(time_s=step_time_s(40, STEP), score=1.0)
    # window 5: 0.2, 0.4, 0.6 at steps 40, 41, 42 -> fires two steps later, at 0.6
    [smoothed] = detect(probs, STEP, dataclasses.replace(PARAMS, smoothing_steps=5))
    assert smoothed.time_s == pytest.approx(43 * STEP)
    assert smoothed.score == pytest.approx(0.6)
    # a 2-step spike never gets above 2/5 with window 5
    assert detect(pulse(100, (40, 42)), STEP, dataclasses.replace(PARAMS, smoothing_steps=5)) == []


# --- detection rule --------------------------------------------------------------------

def test_clean_pulse_gives_one_detection_stamped_at_end_of_step():
    dets = detect(pulse(500, (100, 120), value=0.9), STEP, RAW)
    assert len(dets) == 1
    assert dets[0].time_s == pytest.approx(101 * STEP)  # step 100 ends at 2.02 s
    assert dets[0].score == pytest.approx(0.9)


def test_threshold_is_inclusive_and_start_counts_as_crossing():
    assert len(detect(pulse(50, (10, 20), value=0.5), STEP, RAW)) == 1  # == threshold fires
    assert detect(pulse(50, (10, 20), value=0.49), STEP, RAW) == []
    [d] = detect(np.ones(50), STEP, RAW)  # already high at step 0
    assert d.time_s == pytest.approx(STEP)


def test_wobbly_pulse_within_refractory_gives_one_detection():
    probs = pulse(500, (100, 110), (115, 125), (130, 140))  # 3 crossings in 0.6 s
    assert len(detect(probs, STEP, RAW)) == 1


def test_pulses_further_apart_than_refractory_give_two_detections():
    probs = pulse(500, (100, 110), (160, 170))  # crossings 60 steps = 1.2 s apart
    assert [d.time_s for d in detect(probs, STEP, RAW)] == pytest.approx([101 * STEP, 161 * STEP])


def test_refractory_boundary_in_whole_steps():
    assert refractory_steps(1.0, 0.02) == 50
    assert len(detect(pulse(300, (100, 105), (150, 155)), STEP, RAW)) == 2  # exactly 1.0 s
    assert len(detect(pulse(300, (100, 105), (149, 155)), STEP, RAW)) == 1  # 0.98 s


def test_crossing_inside_refractory_is_dropped_not_postponed():
    # dips and comes back at 0.5 s, then stays high past the end of the refractory period
    probs = pulse(500, (100, 110), (125, 400))
    assert len(detect(probs, STEP, RAW)) == 1


def test_zero_refractory_fires_on_every_crossing():
    cfg = dataclasses.replace(PARAMS, smoothing_steps=1, refractory_s=0.0)
    assert len(detect(pulse(50, (1, 2), (3, 4), (5, 6)), STEP, cfg)) == 3


@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_offline_for_random_chunkings(seed):
    rng = np.random.default_rng(seed)
    cfg = DetectionConfig(smoothing_steps=int(rng.integers(1, 9)),
                          refractory_s=float(rng.choice([0.0, 0.1, 0.5, 1.0])),
                          threshold=float(rng.uniform(0.3, 0.7)))
    probs = rng.random(int(rng.integers(1, 1500))) ** 2
    expected = detect(probs, STEP, cfg)
    for _ in range(5):
        cuts = np.sort(rng.integers(0, probs.size + 1, size=int(rng.integers(0, 40))))
        det = StreamingDetector(STEP, cfg)
        got = [d for chunk in np.split(probs, cuts) for d in det.process(chunk)]
        assert got == expected  # bit-identical times and scores


def test_streaming_one_step_at_a_time_and_reset():
    probs = pulse(400, (50, 60), (200, 260))
    cfg = PARAMS
    det = StreamingDetector(STEP, cfg)
    got = [d for x in probs for d in det.process(np.array([x]))]
    assert got == detect(probs, STEP, cfg) and len(got) == 2
    det.reset()
    assert det.process(probs) == got


# --- scoring ---------------------------------------------------------------------------

def at(*times):
    return [Detection(t, 1.0) for t in times]


def test_score_clip_hit_at_both_window_edges():
    trig = [(2.0, 2.5)]
    assert score_clip(at(2.0), trig, 10.0).n_missed == 0
    assert score_clip(at(3.5), trig, 10.0).n_missed == 0  # word end + 1.0 s, inclusive


def test_score_clip_just_after_window_is_miss_and_false_accept():
    c = score_clip(at(3.51), [(2.0, 2.5)], 10.0)
    assert (c.n_triggers, c.n_missed, c.n_false_accepts) == (1, 1, 1)
    assert c.frr == 1.0


def test_score_clip_before_word_start_is_false_accept():
    c = score_clip(at(1.99, 2.3), [(2.0, 2.5)], 10.0)
    assert (c.n_missed, c.n_false_accepts) == (0, 1)


def test_one_detection_in_two_overlapping_windows_hits_both():
    c = score_clip(at(3.2), [(2.0, 2.5), (3.0, 3.4)], 10.0)
    assert (c.n_triggers, c.n_missed, c.n_false_accepts) == (2, 0, 0)


def test_fa_per_hour_uses_whole_duration_and_counts_add():
    c = score_clip(at(10.0, 100.0, 1000.0), [], 1800.0)  # 3 FAs in half an hour
    assert (c.hours, c.fa_per_hour) == (0.5, 6.0)
    assert math.isnan(c.frr)  # no trigger words: FRR undefined
    total = c + score_clip(at(5.0), [(4.5, 4.8)], 1800.0)
    assert total == EventCounts(n_triggers=1, n_missed=0, n_false_accepts=3, hours=1.0)
    assert total.fa_per_hour == 3.0


def test_detection_latencies_measured_from_word_end():
    triggers = [(1.0, 1.5), (4.0, 4.6), (8.0, 8.5)]
    dets = at(1.4, 1.7, 4.9, 0.5)  # third trigger missed; 1.7 is not the first in its window
    assert detection_latencies(dets, triggers) == pytest.approx([-0.1, 0.3])


# --- threshold sweep -------------------------------------------------------------------

def slow_sweep(clips, cfg, thresholds):
    """The obvious path the fast sweep must equal."""
    missed, fas = [], []
    for t in thresholds:
        c = EventCounts(0, 0, 0, 0.0)
        for probs, trig, dur in clips:
            c = c + score_clip(detect(probs, STEP, DetectionConfig(cfg.smoothing_steps,
                                                                   cfg.refractory_s, t)), trig, dur)
        missed.append(c.n_missed)
        fas.append(c.n_false_accepts)
    return np.array(missed), np.array(fas)


def random_clips(rng, n):
    clips = []
    for _ in range(n):
        steps = int(rng.integers(0, 400))
        probs = rng.random(steps) ** 3
        trig = []
        for _ in range(int(rng.integers(0, 4))):
            a = float(rng.uniform(0, steps * STEP + 0.5))
            trig.append((a, a + float(rng.uniform(0, 0.6))))
        clips.append((probs, trig, steps * STEP))
    return clips


@pytest.mark.parametrize("seed", range(4))
def test_sweep_equals_per_threshold_detect_and_score(seed):
    rng = np.random.default_rng(seed)
    clips = random_clips(rng, 30)
    cfg = dataclasses.replace(PARAMS, smoothing_steps=int(rng.integers(1, 6)),
                              refractory_s=float(rng.choice([0.0, 0.3, 1.0])))
    thresholds = np.concatenate([rng.random(25), [0.0, 0.5, 0.5, 1.0]])  # unsorted, duplicates
    curve = sweep_thresholds(clips, STEP, cfg, thresholds)
    missed, fas = slow_sweep(clips, cfg, thresholds)
    assert np.array_equal(curve.n_missed, missed)
    assert np.array_equal(curve.n_false_accepts, fas)
    assert curve.n_triggers == sum(len(c[1]) for c in clips)
    assert curve.hours == pytest.approx(sum(c[2] for c in clips) / 3600)
    np.testing.assert_allclose(curve.frr, missed / curve.n_triggers)
    np.testing.assert_allclose(curve.fa_per_hour, fas / curve.hours)
    assert np.array_equal(curve.thresholds, thresholds)


def test_sweep_matches_when_clips_span_several_groups(monkeypatch):
    import components.audio.detection as detection

    monkeypatch.setattr(detection, "_EVENT_BUDGET", 500)  # force many small groups
    rng = np.random.default_rng(11)
    clips, thresholds = random_clips(rng, 20), np.linspace(0, 1, 21)
    curve = sweep_thresholds(clips, STEP, PARAMS, thresholds)
    missed, fas = slow_sweep(clips, PARAMS, thresholds)
    assert np.array_equal(curve.n_missed, missed) and np.array_equal(curve.n_false_accepts, fas)


def test_sweep_without_triggers_has_nan_frr():
    curve = sweep_thresholds([(np.full(100, 0.9), [], 2.0)], STEP, PARAMS, [0.5, 0.95])
    assert np.isnan(curve.frr).all()
    assert curve.fa_per_hour.tolist() == [1800.0, 0.0]


def bump_clips(rng, n):
    """Unimodal bumps on silence, far apart: each bump fires iff its peak >= threshold."""
    clips = []
    for _ in range(n):
        probs, trig = np.zeros(500), []
        for start in (50, 200, 350):
            peak = rng.random()
            probs[start:start + 21] = peak * (1 - np.abs(np.arange(-10, 11)) / 10)
            if rng.random() < 0.5:
                trig.append(((start - 20) * STEP, start * STEP))
        clips.append((probs, trig, 10.0))
    return clips


def test_frr_rises_and_fa_falls_with_threshold_on_unimodal_bumps():
    curve = sweep_thresholds(bump_clips(np.random.default_rng(3), 40), STEP, PARAMS,
                             np.linspace(0.01, 1, 100))
    assert np.all(np.diff(curve.frr) >= 0) and np.all(np.diff(curve.fa_per_hour) <= 0)
    assert curve.frr[0] < curve.frr[-1]


def test_frr_is_not_monotonic_in_general():
    # the track is already at 0.4 before the word: at 0.3 it fires early (false accept) and
    # never crosses again in the window; at 0.5 it fires inside the window.
    probs = np.concatenate([np.zeros(50), np.full(100, 0.4), np.full(30, 0.9), np.zeros(70)])
    curve = sweep_thresholds([(probs, [(2.5, 3.0)], 5.0)], STEP, RAW, [0.3, 0.5])
    assert curve.frr.tolist() == [1.0, 0.0]


def test_sweep_rejects_bad_inputs():
    with pytest.raises(ValueError):
        sweep_thresholds([(np.zeros(5), [], 1.0)], STEP, RAW, [np.nan])
    with pytest.raises(ValueError):
        sweep_thresholds([(np.zeros(5), [(2.0, 1.0)], 1.0)], STEP, RAW, [0.5])
    with pytest.raises(ValueError):
        sweep_thresholds([(np.zeros(5), [], -1.0)], STEP, RAW, [0.5])


def test_sweep_is_fast():
    rng = np.random.default_rng(0)
    clips = [(rng.random(500) ** 4, [(3.0, 3.5)], 10.0) for _ in range(500)]
    t0 = time.perf_counter()
    sweep_thresholds(clips, STEP, PARAMS, np.linspace(0, 1, 200))
    assert time.perf_counter() - t0 < 20  # ~1 s here; generous for loaded CI


# --- operating point, frame metrics, reporting -----------------------------------------

def hand_curve():
    return DetCurve(thresholds=np.array([0.9, 0.1, 0.3, 0.5, 0.7]),
                    frr=np.array([0.5, 0.0, 0.05, 0.1, 0.2]),
                    fa_per_hour=np.array([0.0, 5.0, 1.0, 0.4, 0.6]), n_triggers=20, hours=2.0)


def test_pick_operating_threshold_takes_lowest_qualifying():
    curve = hand_curve()
    assert pick_operating_threshold(curve, 0.5) == 0.5  # 0.7 is above target again: ignored
    assert pick_operating_threshold(curve, 1.0) == 0.3
    assert pick_operating_threshold(curve, 10.0) == 0.1


def test_pick_operating_threshold_falls_back_to_highest():
    curve = hand_curve()
    curve.fa_per_hour = np.array([0.2, 5.0, 1.0, 0.4, 0.6])
    assert pick_operating_threshold(curve, 0.1) == 0.9
    assert curve_point(curve, 0.5) == (0.1, 0.4)


def test_frame_metrics_hand_built():
    probs = np.array([0.9, 0.8, 0.2, 0.6, 0.1, 0.7])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = frame_metrics(probs, labels, 0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 1)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7)


def test_frame_metrics_zero_division_is_zero_and_shapes_checked():
    m = frame_metrics(np.zeros((2, 3)), np.zeros((2, 3)), 0.5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        frame_metrics(np.zeros(3), np.zeros(4), 0.5)
    with pytest.raises(ValueError):
        frame_metrics(np.zeros(3), np.array([0, 2, 1]), 0.5)


def test_det_curve_rows_are_json_safe():
    curve = DetCurve(np.array([0.2, 0.8]), np.array([np.nan, 0.5]), np.array([3.0, 0.0]), 0, 1.0)
    assert det_curve_rows(curve) == [
        {"threshold": 0.2, "frr": None, "fa_per_hour": 3.0},
        {"threshold": 0.8, "frr": 0.5, "fa_per_hour": 0.0},
    ]


def test_plot_det_curve_writes_png(tmp_path):
    curve = sweep_thresholds(bump_clips(np.random.default_rng(1), 10), STEP, PARAMS,
                             np.linspace(0, 1, 50))
    no_triggers = sweep_thresholds([(np.zeros(50), [], 1.0)], STEP, PARAMS, [0.5])
    path = tmp_path / "plots" / "det.png"
    plot_det_curve({"val": curve, "test": curve, "negatives": no_triggers}, {"val": 0.5}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [
    lambda: smooth(np.zeros((2, 3)), 3),
    lambda: smooth(np.array([0.1, np.nan]), 3),
    lambda: dataclasses.replace(PARAMS, smoothing_steps=0),
    lambda: dataclasses.replace(PARAMS, refractory_s=-1.0),
    lambda: detect(np.zeros(5), 0.0, RAW),
    lambda: score_clip([], [(2.0, 1.0)], 10.0),
    lambda: score_clip([], [(1.0, 2.0)], 10.0, window_after_s=-0.5),
])
def test_bad_inputs_are_rejected(bad):
    with pytest.raises(ValueError):
        bad()


def test_threshold_interpolates_where_the_det_curve_crosses_the_target():
    from components.audio.detection import DetCurve, interpolated_threshold
    th = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    fa = np.array([9.0, 4.0, 2.0, 0.4, 0.0])  # FA/h falls as the threshold rises
    curve = DetCurve(th, np.linspace(0.1, 0.5, 5), fa, 10, 5.0)
    assert interpolated_threshold(curve, 1.0) == pytest.approx(0.7 + 0.1 * (2.0 - 1.0) / (2.0 - 0.4))
    assert interpolated_threshold(curve, 4.0) == pytest.approx(0.6)  # on a grid point: that point
    assert interpolated_threshold(curve, 20.0) == pytest.approx(0.5)  # the lowest swept already meets it
    never = DetCurve(th, np.linspace(0.1, 0.5, 5), fa + 1.0, 10, 5.0)
    assert interpolated_threshold(never, 0.5) == pytest.approx(0.9)  # none meets it: the highest
