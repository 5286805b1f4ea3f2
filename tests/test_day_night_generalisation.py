"""Issue 15: the renderer's camera styles and the held-out style, photometric augmentation, the
frozen EfficientNet-Lite0 backbone and the brightness baseline, on real (tiny) objects."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from components.config import load_params
from components.vision import brightness
from components.vision.augment import augment
from components.vision.backbone import FEATURES, EfficientNetLite0, weights_path
from components.vision.camera import STYLES
from components.vision.model import build_classifier, load_classifier, save_classifier
from components.vision.scenes import GROUNDS, SceneConfig, generate
from components.vision.training import fit
from conftest import classifier_config, train_params

CFG = SceneConfig.from_params(load_params().day_night)  # params.yaml's renderer


@pytest.fixture(scope="module")
def batch():
    return generate(CFG, seed=5, n=80)


def test_styles_and_grounds_vary_and_rendering_is_deterministic(batch):
    images, frame = batch
    again, frame_again = generate(CFG, seed=5, n=80)
    assert again.tobytes() == images.tobytes() and frame_again.equals(frame)
    assert set(frame["style"]) == set(CFG.styles) and "painted" not in set(frame["style"])
    assert len(set(frame["ground"])) >= 5 and set(frame["ground"]) <= set(GROUNDS)
    held_out, held_frame = generate(dataclasses.replace(CFG, styles=("painted",)), seed=5, n=10)
    assert set(held_frame["style"]) == {"painted"} and held_out.shape == (10, 64, 64, 3)
    with pytest.raises(ValueError, match="styles"):
        load_params(overrides=["day_night.generate.styles=[polaroid]"])
    assert set(STYLES) >= set(CFG.styles) | {"painted"}


def test_moonless_nights_are_dark_as_night_photos_are(batch):
    images, frame = batch
    mean = images.reshape(len(images), -1).mean(axis=1)
    plain_night = ((frame["condition"] == "night") & ~frame["moon"]).to_numpy()
    assert plain_night.any() and mean[plain_night].max() < 70  # mostly black sky, not metered up to grey
    assert np.median(mean[(frame["label"] == "day").to_numpy()]) > 100


def test_augmentation_changes_pixels_keeps_shape_and_dtype_and_redraws(batch):
    images, _ = batch
    rng = np.random.default_rng(0)
    always = train_params("day_night").augment.model_copy(update={"p": 1.0})
    first, second = augment(images[:16], rng, always), augment(images[:16], rng, always)
    assert first.shape == images[:16].shape and first.dtype == np.uint8
    assert not np.array_equal(first, images[:16]) and not np.array_equal(first, second)
    off = augment(images[:4], rng, always.model_copy(update={"p": 0.0}))
    assert np.abs(off.astype(int) - images[:4]).max() <= 1  # p 0: the images, give or take rounding
    with pytest.raises(ValueError, match="blur"):  # a chance in [0, 1]
        train_params("day_night", augment={**always.model_dump(), "blur": 2.0})


def test_backbone_loads_offline_from_the_wheel_and_gives_1280_features():
    assert weights_path().is_file()
    net = EfficientNetLite0(64)
    with torch.inference_mode():
        out = net(torch.rand(2, 3, 64, 64) * 255)
    assert out.shape == (2, FEATURES) and torch.isfinite(out).all()
    net.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_pretrained_kind_trains_only_its_head_on_cached_features_and_round_trips(batch, tmp_path):
    images, frame = batch
    y = (frame["label"] == "night").to_numpy().astype(np.int64)
    model = build_classifier(classifier_config(kind="efficientnet_lite0", hidden=(8,)), seed=0)
    stem = model.backbone._conv_stem.weight.clone()
    result = fit(model, images[:60], y[:60], images[60:], y[60:],
                 train_params("day_night", max_epochs=2, patience=2, lr=3e-3, lr_decay=0.0), seed=0, backend="torch")
    assert len(result.history) == 2 and torch.equal(model.backbone._conv_stem.weight, stem)
    p = model.predict_proba(images[60:])
    assert p.shape == (20,) and ((p >= 0) & (p <= 1)).all()
    save_classifier(model, tmp_path / "m.pt")
    assert np.allclose(load_classifier(tmp_path / "m.pt").predict_proba(images[60:]), p)


def test_brightness_baseline_fits_the_best_threshold_and_fails_on_bright_nights():
    rng = np.random.default_rng(0)
    dark, bright = rng.integers(0, 40, (20, 8, 8, 3)), rng.integers(120, 255, (20, 8, 8, 3))
    images, night = np.concatenate([dark, bright]).astype(np.uint8), np.r_[np.ones(20), np.zeros(20)]
    t = brightness.fit_threshold(images, night)
    assert 20 < t < 190 and ((brightness.p_night(images, t) >= 0.5) == night).all()
    lit_night = np.full((1, 8, 8, 3), 200, np.uint8)
    f = brightness.figures(t, np.concatenate([images, lit_night]), np.r_[night, 1], np.r_[["plain"] * 40, ["lit"]])
    assert f["by_condition"]["lit"]["accuracy"] == 0.0 and f["by_condition"]["plain"]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="day and night"):
        brightness.fit_threshold(dark.astype(np.uint8), np.ones(20))
