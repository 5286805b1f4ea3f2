"""Day/night classifier: the NumPy network's equations, its bridge to the torch model, and training."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from components.errors import SafetyStop
from components.vision import numpy_net
from components.vision.model import (ClassifierConfig, build_classifier, classifier_from_numpy,
                                     load_classifier, numpy_params, save_classifier)
from components.vision.training import OPTIMIZERS, bce_from_logits, fit
from components.config import load_params
from conftest import classifier_config, train_params

SIZE = 8  # 8x8x3 toy images keep training tests fast; nothing below depends on the size
ACTIVATIONS = numpy_net.ACTIVATIONS
TORCH_ACTIVATIONS = {"relu": torch.relu, "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
                     "tanh": torch.tanh, "sigmoid": torch.sigmoid}
TOY_LR = {"sgd": 0.5, "momentum": 0.5, "rmsprop": 1e-2, "adam": 3e-2}  # lrs that suit each rule here


def config(**overrides):
    """params.yaml's day_night.train on one thread at a constant lr (TOY_LR suit it), with `overrides`."""
    return train_params("day_night", **{"lr_decay": 0.0, **overrides})


def toy_day_night(n: int, seed: int, size: int = SIZE):
    """Separable toy data: night images (label 1) are dark (0..115), day images bright (140..255)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.where(y == 1, 0, 140)[:, None, None, None] + rng.integers(0, 116, (n, size, size, 3))
    return x.astype(np.uint8), y


def rel_diff(a, b) -> float:
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


def small_problem(seed: int = 0, dims=(6, 5, 4, 1), m: int = 10):
    """A 3-layer net with random (non-zero) biases and random float64 data."""
    rng = np.random.default_rng(seed)
    params = numpy_net.init_params(list(dims), "he", seed=seed)
    for k in params:
        if k.startswith("b"):
            params[k] = rng.standard_normal(params[k].shape) * 0.5
    return params, rng.standard_normal((dims[0], m)), rng.integers(0, 2, (1, m)).astype(np.float64)


def torch_gradients(params, X, Y, activation: str, lambd: float, masks=(), keep_prob: float = 1.0):
    """The same network and cost built from the same weights (and dropout masks) in torch; autograd's gradients."""
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    L, m = len(params) // 2, X.shape[1]
    A = torch.tensor(X)
    for l in range(1, L + 1):
        Z = t[f"W{l}"] @ A + t[f"b{l}"]
        A = TORCH_ACTIVATIONS[activation](Z)
        if l <= len(masks):
            A = A * torch.tensor(masks[l - 1]) / keep_prob
    loss = F.binary_cross_entropy_with_logits(Z, torch.tensor(Y))
    loss = loss + lambd / (2 * m) * sum((t[f"W{l}"] ** 2).sum() for l in range(1, L + 1))
    loss.backward()
    return float(loss.detach()), {"d" + k: v.grad.numpy() for k, v in t.items()}


# --- the NumPy network's equations -------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numpy_backward_matches_torch_autograd(activation):
    params, X, Y = small_problem()
    lambd = 0.7
    AL, caches = numpy_net.forward(X, params, activation)
    grads = numpy_net.backward(AL, Y, caches, params, activation, lambd)
    torch_loss, torch_grads = torch_gradients(params, X, Y, activation, lambd)
    assert numpy_net.cost(caches[-1].Z, Y, params, lambd) == pytest.approx(torch_loss, rel=1e-12)
    assert set(grads) == {"dW1", "db1", "dW2", "db2", "dW3", "db3"}
    for k, g in grads.items():
        assert g.shape == params[k[1:]].shape
        assert rel_diff(g, torch_grads[k]) < 1e-6, k


def test_backward_through_inverted_dropout_matches_torch_autograd():
    params, X, Y = small_problem(seed=4)
    AL, caches = numpy_net.forward(X, params, "relu", keep_prob=0.7, rng=np.random.default_rng(0))
    grads = numpy_net.backward(AL, Y, caches, params, "relu", lambd=0.1, keep_prob=0.7)
    masks = [c.D for c in caches[:-1]]  # hidden layers only; the output layer is never dropped
    assert caches[-1].D is None and all(d is not None and not d.all() for d in masks)
    _, torch_grads = torch_gradients(params, X, Y, "relu", 0.1, masks, keep_prob=0.7)
    for k, g in grads.items():
        assert rel_diff(g, torch_grads[k]) < 1e-6, k


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_check_accepts_the_backward_pass(activation):
    params, X, Y = small_problem(seed=1)
    assert numpy_net.gradient_check(params, X, Y, activation, lambd=0.7) < 1e-7


def test_gradient_check_flags_a_wrong_gradient():
    params, X, Y = small_problem(seed=2)
    AL, caches = numpy_net.forward(X, params, "relu")
    grads = numpy_net.backward(AL, Y, caches, params, "relu")
    grads["dW2"][0, 0] += 0.1
    assert numpy_net.gradient_check(params, X, Y, "relu", grads=grads) > 1e-3


def test_inverted_dropout_keeps_the_expected_activation():
    params, X, _ = small_problem(dims=(6, 200, 1), m=400)
    _, full = numpy_net.forward(X, params, "relu")
    _, dropped = numpy_net.forward(X, params, "relu", keep_prob=0.8, rng=np.random.default_rng(0))
    assert dropped[0].D.mean() == pytest.approx(0.8, abs=0.01)  # hidden layer masked...
    assert dropped[1].A_prev.mean() == pytest.approx(full[1].A_prev.mean(), rel=0.02)  # ...and rescaled


def test_images_flatten_pixel_major_channel_minor():
    x = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    X = numpy_net.images_to_columns(x, np.float64)
    assert X.shape == (4 * 4 * 3, 3)
    row, col, ch = 2, 1, 2
    assert X[(row * 4 + col) * 3 + ch, 1] == x[1, row, col, ch] / 255


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_forward_equals_torch_mlp_after_weight_transfer(activation):
    params, _, _ = small_problem(seed=3, dims=(16 * 16 * 3, 7, 5, 1))
    images = np.random.default_rng(3).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    p_numpy = numpy_net.forward(numpy_net.images_to_columns(images, np.float64), params, activation)[0].ravel()
    model = classifier_from_numpy(params, classifier_config(activation=activation, image_size=16))
    assert model.cfg.hidden == (7, 5)
    np.testing.assert_allclose(model.predict_proba(images), p_numpy, atol=1e-6)
    back = numpy_params(model)  # and back again
    assert all(np.allclose(back[k], params[k], atol=1e-6) for k in params)


def test_zero_init_keeps_every_hidden_unit_identical():
    """The notes' symmetry demo: with zero init, the units of a layer never become different."""
    x, y = toy_day_night(64, seed=0)
    X, Y = numpy_net.images_to_columns(x, np.float64), y.reshape(1, -1)

    def train(init: str) -> dict:
        params = numpy_net.init_params([X.shape[0], 4, 3, 1], init, seed=0)
        opt = numpy_net.Optimizer("sgd", 1.0, params)
        for _ in range(30):
            AL, caches = numpy_net.forward(X, params, "sigmoid")
            opt.step(params, numpy_net.backward(AL, Y, caches, params, "sigmoid"))
        return params

    zeros, he = train("zeros"), train("he")
    for k in ("W1", "W2"):
        assert np.abs(zeros[k]).max() > 1e-6  # the units did learn...
        assert np.ptp(zeros[k], axis=0).max() < 1e-12  # ...but all learned the same thing
        assert np.ptp(he[k], axis=0).max() > 1e-3

    model = build_classifier(classifier_config(hidden=(4, 3), activation="sigmoid", init="zeros",
                                               image_size=SIZE), seed=0)
    fit(model, x, y, x, y, config(optimizer="sgd", lr=1.0, batch_size=16, max_epochs=4), seed=0, backend="torch")
    first = model.body[0].weight.detach().numpy()
    assert np.abs(first).max() > 1e-6 and np.ptp(first, axis=0).max() < 1e-6


# --- the torch model ---------------------------------------------------------------------------

@pytest.mark.parametrize("init,std", [("he", math.sqrt(2 / 12288)), ("xavier", math.sqrt(1 / 12288)),
                                      ("small_random", 0.01), ("zeros", 0.0)])
def test_build_classifier_applies_the_init_scheme(init, std):
    model = build_classifier(classifier_config(init=init), seed=0)
    w = model.body[0].weight.detach().numpy()
    assert w.shape == (32, 12288) and float(model.body[0].bias.detach().abs().max()) == 0.0
    assert w.std() == pytest.approx(std, rel=0.02, abs=1e-12)
    assert torch.equal(build_classifier(classifier_config(init=init), seed=0).body[0].weight, model.body[0].weight)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_forward_takes_raw_channels_last_images(kind):
    model = build_classifier(classifier_config(kind=kind, image_size=SIZE, cnn_channels=(4, 8)), seed=0).eval()
    x, _ = toy_day_night(5, seed=1)
    logits = model(torch.from_numpy(x))
    assert logits.shape == (5,)
    assert torch.allclose(model(torch.from_numpy(x).double()), logits)  # floats are raw 0..255 values too
    model.temperature = 2.0
    np.testing.assert_allclose(model.predict_proba(x), 1 / (1 + np.exp(-logits.double().detach().numpy() / 2)),
                               atol=1e-7)
    assert model.predict_proba(x).dtype == np.float64
    with pytest.raises(ValueError, match="expected images"):
        model(torch.zeros(2, 3, SIZE, SIZE))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_save_load_round_trip(tmp_path, kind):
    model = build_classifier(classifier_config(kind=kind, hidden=(6, 4), image_size=SIZE, cnn_channels=(4, 8)), 0)
    model.threshold, model.temperature, model.metadata = 0.37, 1.8, {"run_id": "abc", "epochs": 3}
    save_classifier(model, tmp_path / "m.pt")
    loaded = load_classifier(tmp_path / "m.pt")
    x, _ = toy_day_night(7, seed=2)
    assert not loaded.training and loaded.cfg == model.cfg
    assert (loaded.threshold, loaded.temperature, loaded.metadata) == (0.37, 1.8, model.metadata)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_a_classifier_saved_before_the_backbone_kind_still_loads(tmp_path):
    model = build_classifier(classifier_config(image_size=SIZE), 0)
    save_classifier(model, tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    del ckpt["config"]["backbone_input"]  # what files saved before efficientnet_lite0 hold
    torch.save(ckpt, tmp_path / "old.pt")
    x, _ = toy_day_night(7, seed=2)
    np.testing.assert_array_equal(load_classifier(tmp_path / "old.pt").predict_proba(x), model.predict_proba(x))


def test_load_rejects_files_that_are_not_classifiers(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"definitely not a checkpoint")
    torch.save({"format": "cs230-trigger-word/1"}, tmp_path / "other.pt")
    model = build_classifier(classifier_config(image_size=SIZE), 0)
    save_classifier(model, tmp_path / "good.pt")
    ckpt = torch.load(tmp_path / "good.pt", weights_only=True)
    ckpt["config"]["hidden"] = [5]  # weights no longer fit the architecture
    torch.save(ckpt, tmp_path / "mismatch.pt")
    for name in ("garbage.pt", "other.pt", "mismatch.pt"):
        with pytest.raises(ValueError) as err:
            load_classifier(tmp_path / name)
        assert "\n" not in str(err.value)


def test_configs_are_strict():
    with pytest.raises(ValueError, match="activation"):
        load_params(overrides=["day_night.model.activation=swish"])
    with pytest.raises(ValueError, match="unknown"):
        ClassifierConfig.from_dict({"kind": "mlp", "layers": 3})
    cfg = classifier_config(hidden=(64, 32), dropout=0.2)
    assert ClassifierConfig.from_dict(cfg.to_dict()) == cfg  # lists from YAML become tuples again
    with pytest.raises(ValueError, match="optimizer"):
        config(optimizer="lbfgs")
    with pytest.raises(ValueError, match="epochs"):
        config(epochs=3)


# --- training ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_learns_the_toy_problem(optimizer, backend):
    x, y = toy_day_night(128, seed=0)
    vx, vy = toy_day_night(64, seed=1)
    model = build_classifier(classifier_config(hidden=(8,), image_size=SIZE), seed=0)
    before = bce_from_logits(model.predict_logits(x), y)
    result = fit(model, x, y, vx, vy, config(optimizer=optimizer, lr=TOY_LR[optimizer], batch_size=16,
                                              max_epochs=8, weight_decay=1e-4), seed=0, backend=backend)
    assert bce_from_logits(model.predict_logits(x), y) < 0.5 * before
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[result.best_epoch - 1]["val_accuracy"] > 0.9


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_numpy_and_torch_backends_train_the_same_model(optimizer):
    x, y = toy_day_night(96, seed=0)
    vx, vy = toy_day_night(32, seed=1)
    torch_model = build_classifier(classifier_config(hidden=(8, 4), activation="tanh", image_size=SIZE), seed=0)
    numpy_model = copy.deepcopy(torch_model)
    cfg = config(optimizer=optimizer, lr=TOY_LR[optimizer], batch_size=16, max_epochs=3, weight_decay=1e-3)
    a = fit(torch_model, x, y, vx, vy, cfg, seed=0, backend="torch")
    b = fit(numpy_model, x, y, vx, vy, cfg, seed=0, backend="numpy")
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-4)
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-4)
    np.testing.assert_allclose(numpy_model.predict_proba(vx), torch_model.predict_proba(vx), atol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_fit_stops_early_and_restores_the_best_epoch(backend):
    x, y = toy_day_night(128, seed=0)
    vx, vy = toy_day_night(64, seed=1)
    vy = 1 - vy  # validation labels flipped: the better the model learns, the worse val loss gets
    model = build_classifier(classifier_config(hidden=(8,), image_size=SIZE), seed=0)
    result = fit(model, x, y, vx, vy, config(lr=1e-2, batch_size=16, max_epochs=30, patience=2), seed=0,
                 backend=backend)
    val_losses = [h["val_loss"] for h in result.history]
    assert result.stop_reason == "early_stopping"
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    assert len(result.history) == result.best_epoch + 2 < 30
    assert bce_from_logits(model.predict_logits(vx), vy) == pytest.approx(min(val_losses), rel=1e-5)


def test_fit_respects_max_epochs_and_reports_every_epoch():
    x, y = toy_day_night(64, seed=0)
    model = build_classifier(classifier_config(hidden=(8,), dropout=0.2, image_size=SIZE), seed=0)
    calls = []
    result = fit(model, x, y, x, y, config(max_epochs=3, patience=10), seed=0, backend="torch",
                 on_epoch=lambda epoch, metrics: calls.append((epoch, metrics)))
    assert result.stop_reason == "max_epochs" and len(result.history) == 3
    assert [e for e, _ in calls] == [1, 2, 3] and [m for _, m in calls] == result.history
    assert set(result.history[0]) == {"train_loss", "val_loss", "val_accuracy", "lr", "epoch_s"}
    assert not model.training and result.seconds > 0


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_learning_rate_decays_as_the_notes_give_it(backend):
    """lr_e = lr / (1 + decay (e - 1)), and both backends step with the same rates."""
    x, y = toy_day_night(64, seed=0)
    vx, vy = toy_day_night(32, seed=1)
    models = [build_classifier(classifier_config(hidden=(8,), image_size=SIZE), seed=0) for _ in range(2)]
    cfg = config(optimizer="sgd", lr=0.1, lr_decay=0.5, max_epochs=4, patience=10)
    decayed = fit(models[0], x, y, vx, vy, cfg, seed=0, backend=backend)
    assert [h["lr"] for h in decayed.history] == pytest.approx([0.1, 0.1 / 1.5, 0.1 / 2, 0.1 / 2.5])
    constant = fit(models[1], x, y, vx, vy, cfg.model_copy(update={"lr_decay": 0.0}), seed=0, backend=backend)
    assert decayed.history[0]["train_loss"] == pytest.approx(constant.history[0]["train_loss"])
    assert decayed.history[-1]["train_loss"] != pytest.approx(constant.history[-1]["train_loss"])


def test_fit_raises_past_its_safety_stop_and_never_stops_early_on_time():
    x, y = toy_day_night(32, seed=0)
    model = build_classifier(classifier_config(kind="cnn", cnn_channels=(4,), image_size=SIZE), seed=0)
    epochs = []
    with pytest.raises(SafetyStop, match="safety stop of 1e-09 min"):
        fit(model, x, y, x, y, config(max_epochs=10, safety_minutes=1e-9), seed=0, backend="torch",
            on_epoch=lambda e, m: epochs.append(e))
    assert epochs == [1]
    result = fit(model, x, y, x, y, config(max_epochs=3, patience=10), seed=0, backend="torch")  # the whole budget
    assert result.stop_reason == "max_epochs" and len(result.history) == 3 and result.threads == 1


def test_fit_rejects_bad_inputs():
    x, y = toy_day_night(16, seed=0)
    cnn = build_classifier(classifier_config(kind="cnn", image_size=SIZE), seed=0)
    with pytest.raises(ValueError, match="numpy"):
        fit(cnn, x, y, x, y, config(), seed=0, backend="numpy")
    mlp = build_classifier(classifier_config(image_size=SIZE), seed=0)
    with pytest.raises(ValueError, match="labels"):
        fit(mlp, x, y * 2, x, y, config(), seed=0, backend="torch")
    with pytest.raises(ValueError, match="images"):
        fit(mlp, x[:, :4], y, x, y, config(), seed=0, backend="torch")
