"""Specification of trigger-word training: the dataset contract, learning a toy task,
determinism, and the stopping rules (epochs and patience; time only as a safety stop)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from components.audio.model import TriggerWordModel
from components.audio.training import ClipDataset, evaluate, frame_metrics, train
from components.config import load_params
from components.errors import SafetyStop
from components.tasks.trigger_word.fitting import train_config
from conftest import train_params, trigger_word_model

SR = 16000
SAMPLES_PER_STEP = 320  # hop 160 x conv stride 2
PULSE_STEPS = 10  # K: label ones for 200 ms from the step holding the word's end


def make_fake_dataset(root: Path, n_clips: int, clip_s: float = 2.0, seed: int = 0) -> list[str]:
    """A generated-dataset directory in the real layout: clips/, manifest.csv, labels.npy.

    The "trigger word" is a loud 1 kHz tone burst over noise; 3 clips in 4 have one.
    The last clip is a negative_stream row (label_row -1) that is not in labels.npy.
    """
    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True)
    n_samples = int(clip_s * SR)
    n_labelled = n_clips - 1
    labels = np.zeros((n_labelled, n_samples // SAMPLES_PER_STEP), dtype=np.uint8)
    rows = []
    for i in range(n_clips):
        wave = rng.normal(0.0, 0.02, n_samples)
        triggers = []
        if i % 4 and i < n_labelled:
            start = rng.uniform(0.1, clip_s - 0.8)
            a, b = int(start * SR), int((start + 0.3) * SR)
            wave[a:b] += 0.5 * np.sin(2 * np.pi * 1000 * np.arange(b - a) / SR)
            triggers.append([a / SR, b / SR])
            step = b // SAMPLES_PER_STEP  # the step containing the word's end
            labels[i, step: step + PULSE_STEPS] = 1
        clip_id = f"clip{i:04d}"
        sf.write(root / "clips" / f"{clip_id}.wav", wave.astype(np.float32), SR, subtype="PCM_16")
        rows.append({"clip_id": clip_id, "file": f"clips/{clip_id}.wav",
                     "subset": "main" if i < n_labelled else "negative_stream",
                     "label_row": i if i < n_labelled else -1, "triggers": json.dumps(triggers)})
    np.save(root / "labels.npy", labels)
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [r["clip_id"] for r in rows]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    ids = make_fake_dataset(root, n_clips=25)
    return root, ids


def new_model(seed: int = 0) -> TriggerWordModel:
    torch.manual_seed(seed)
    return trigger_word_model()


def test_clip_dataset_reads_waves_and_label_rows(toy):
    root, ids = toy
    ds = ClipDataset(root, ids)
    assert len(ds) == 25
    wave, labels = ds[1]
    assert wave.dtype == torch.float32 and wave.shape == (2 * SR,)
    assert labels.shape == (100,) and labels.sum() == PULSE_STEPS
    assert ds[0][1].sum() == 0  # no trigger word in clip 0
    assert ds[24][1].sum() == 0 and ds[24][1].shape == (100,)  # negative stream: label_row -1
    with pytest.raises(KeyError):
        ClipDataset(root, ["no-such-clip"])


def test_frame_metrics_on_a_hand_built_case():
    probs = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.1])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])  # tp 2, fp 1, fn 1
    m = frame_metrics(probs, labels)
    assert m == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert frame_metrics(torch.zeros(3), torch.zeros(3)) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_evaluate_reports_the_unweighted_bce_beside_the_weighted_loss(toy):
    """Tune ranks trials by the plain BCE (their pos_weight is searched); evaluate gives it from the
    same pass as the weighted loss, and train() passes it on as val_bce."""
    root, ids = toy
    ds = ClipDataset(root, ids[:8])
    model = new_model()
    weighted = evaluate(model, ds, torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(20.0)))
    plain = evaluate(model, ds, torch.nn.BCEWithLogitsLoss())
    assert plain["bce"] == pytest.approx(plain["loss"])
    assert weighted["bce"] == pytest.approx(plain["loss"])
    assert weighted["loss"] > 1.5 * weighted["bce"]  # positives weigh 20x: the two differ
    seen = []
    train(model, ds, ds, train_params("trigger_word", batch_size=4, max_epochs=1, pos_weight=20.0), 0,
          on_epoch=lambda e, m: seen.append(m))
    assert seen[0]["val_bce"] == pytest.approx(evaluate(model, ds, torch.nn.BCEWithLogitsLoss())["loss"])
    assert seen[0]["val_loss"] > seen[0]["val_bce"]


def test_training_learns_the_toy_task(toy):
    root, ids = toy
    ds = ClipDataset(root, ids[:24])
    seen = []
    cfg = train_params("trigger_word", lr=5e-3, batch_size=8, max_epochs=20, patience=20, pos_weight=1.0,
                       lr_schedule="onecycle")
    result = train(new_model(), ds, ds, cfg, 0, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == list(range(1, len(result.history) + 1))
    history = result.history
    assert set(history[0]) >= {"train_loss", "val_loss", "val_precision", "val_recall", "val_f1",
                               "epoch_s", "lr"}
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]
    assert history[result.best_epoch - 1]["val_f1"] > 0.9


def test_training_is_deterministic_for_a_seed(toy):
    root, ids = toy
    ds = ClipDataset(root, ids[:16])
    cfg = train_params("trigger_word", batch_size=4, max_epochs=2)
    runs = []
    for _ in range(2):
        model = new_model(seed=3)
        result = train(model, ds, ds, cfg, 0, on_epoch=lambda e, m: None)
        losses = [(h["train_loss"], h["val_loss"]) for h in result.history]
        runs.append((losses, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for name, tensor in runs[0][1].items():
        assert torch.equal(tensor, runs[1][1][name]), name


def test_a_loader_worker_process_gives_the_same_training(toy):
    root, ids = toy
    ds = ClipDataset(root, ids[:8])
    losses = []
    for workers in (0, 1):
        result = train(new_model(), ds, ds, train_params("trigger_word", batch_size=4, max_epochs=1), 0,
                       on_epoch=lambda e, m: None, workers=workers)
        losses.append((result.history[0]["train_loss"], result.history[0]["val_loss"]))
    assert losses[0] == losses[1]


def test_training_fits_feature_normalisation_and_keeps_the_best_epoch(toy):
    root, ids = toy
    ds = ClipDataset(root, ids[:8])
    model = new_model()
    assert not model.feature_config.fitted
    result = train(model, ds, ds, train_params("trigger_word", batch_size=4, max_epochs=3), 0,
                   on_epoch=lambda e, m: None)
    assert model.feature_config.fitted and not model.training
    best = min(h["val_loss"] for h in result.history)
    assert result.best_val_loss == best == result.history[result.best_epoch - 1]["val_loss"]


def test_the_safety_stop_raises_after_an_epoch_rather_than_cutting_training_short(toy, capsys):
    root, ids = toy
    ds = ClipDataset(root, ids[:4])
    with pytest.raises(SafetyStop, match="safety stop of 1e-06 min"):
        train(new_model(), ds, ds, train_params("trigger_word", max_epochs=5, safety_minutes=1e-6), 0)
    assert capsys.readouterr().out.count("val_loss") == 1  # no callback: one printed line per epoch


def test_labels_from_another_step_size_are_rejected(toy):
    root, ids = toy
    ds = ClipDataset(root, ids[:4])  # labels.npy has one label per 20 ms
    model = trigger_word_model(conv_stride=1)  # one output per 10 ms
    with pytest.raises(ValueError, match="steps"):
        train(model, ds, ds, train_params("trigger_word", max_epochs=1), 0)


def test_train_config_rejects_unknown_keys_and_bad_values(toy):
    p = load_params().trigger_word
    assert train_config(p, {"lr": 1e-3}).lr == 1e-3
    with pytest.raises(ValueError, match="learning_rate"):
        train_config(p, {"learning_rate": 1e-3})
    with pytest.raises(ValueError):
        train_config(p, {"lr_schedule": "exponential"})
    root, ids = toy
    ds = ClipDataset(root, ids[:4])
    with pytest.raises(ValueError, match="workers"):
        train(new_model(), ds, ds, train_params("trigger_word", max_epochs=1), 0, workers=4)
