"""The day/night scene renderer and user-image loading, as a specification."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from components.config import load_params
from components.vision.images import ImageReadError, find_user_images, inspect_image, load_image
from components.vision.scenes import SceneConfig, contact_sheet, generate, label_for, sample_spec, sky_ev

CFG = SceneConfig.from_params(load_params().day_night)  # params.yaml's renderer


@pytest.fixture(scope="module")
def batch():
    return generate(CFG, seed=7, n=120)


def test_images_are_uint8_rgb_with_one_frame_row_each(batch):
    images, frame = batch
    assert images.shape == (120, 64, 64, 3) and images.dtype == np.uint8
    assert len(frame) == 120 and frame.image_id.iloc[101] == "scene-000101" and frame.image_id.is_unique
    assert {"label", "sun_elevation_deg", "condition", "overcast", "city", "artificial_light", "haze",
            "exposure_ev"} <= set(frame.columns)
    assert images.std(axis=(1, 2, 3)).min() > 1  # no blank images


def test_same_seed_same_bytes_and_other_seeds_differ(batch):
    images, frame = batch
    again, frame_again = generate(CFG, seed=7, n=120)
    assert again.tobytes() == images.tobytes() and frame_again.equals(frame)
    other, _ = generate(CFG, seed=8, n=20)
    assert all(not np.array_equal(a, b) for a, b in zip(other, images))


def test_image_i_depends_only_on_seed_and_i():
    five, frame5 = generate(CFG, seed=3, n=5)
    ten, frame10 = generate(CFG, seed=3, n=10)
    assert np.array_equal(five, ten[:5])
    assert frame5.equals(frame10.iloc[:5])


def test_labels_follow_the_sun_elevation_rule_and_night_share_is_exact(batch):
    _, frame = batch
    assert [label_for(e, CFG) for e in frame.sun_elevation_deg] == frame.label.tolist()
    assert (frame.label == "night").sum() == 60
    for n, share in ((7, 0.5), (10, 0.3), (33, 0.25)):
        _, small = generate(dataclasses.replace(CFG, night_share=share), seed=0, n=n)
        assert (small.label == "night").sum() == round(n * share)
    assert label_for(-6.01, CFG) == "night" and label_for(-6.0, CFG) == "day"
    assert label_for(-3.0, dataclasses.replace(CFG, night_below_deg=-2.0)) == "night"


def test_twilight_images_sit_on_both_sides_of_the_threshold(batch):
    _, frame = batch
    twilight = frame[frame.condition == "dusk_dawn"]
    assert len(twilight) >= 10  # twilight_share 0.2 of 120
    assert ((twilight.sun_elevation_deg - CFG.night_below_deg).abs() <= CFG.twilight_band_deg).all()
    assert set(twilight.label) == {"day", "night"}
    others = frame[frame.condition != "dusk_dawn"]
    assert ((others.sun_elevation_deg - CFG.night_below_deg).abs() > CFG.twilight_band_deg).all()


def test_sampled_specs_respect_the_requested_class():
    rng = np.random.default_rng(0)
    for night in (True, False) * 50:
        spec = sample_spec(rng, CFG, night)
        assert spec.label == ("night" if night else "day")
        assert CFG.elevation_range_deg[0] <= spec.sun_elevation_deg <= CFG.elevation_range_deg[1]


def test_every_hard_case_appears(batch):
    _, frame = batch
    assert {"dusk_dawn", "overcast_day", "lit_city_night", "artificial_light"} <= set(frame.condition)


def test_sky_brightens_smoothly_and_monotonically_with_the_sun():
    elevations = np.linspace(-30, 70, 1001)
    ev = sky_ev(elevations)
    assert np.all(np.diff(ev) > 0) and np.abs(np.diff(ev)).max() < 0.2  # no jumps over 0.1 degree steps


def test_night_images_are_darker_on_average(batch):
    images, frame = batch
    brightness = images.mean(axis=(1, 2, 3))
    night, day = brightness[frame.label == "night"], brightness[frame.label == "day"]
    assert night.mean() < day.mean() - 30


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="night_share"):
        load_params(overrides=["day_night.generate.night_share=1.5"])
    with pytest.raises(ValueError, match="exposure_ev"):
        load_params(overrides=["day_night.generate.exposure_ev=[1.0, -1.0]"])
    with pytest.raises(ValueError, match="twilight_band_deg"):  # the band must fit inside the elevations
        load_params(overrides=["day_night.generate.twilight_band_deg=30.0"])


def test_contact_sheet_writes_a_png(batch, tmp_path):
    images, frame = batch
    path = tmp_path / "sheet" / "examples.png"
    contact_sheet(images, frame, path, n=16)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mode,size,suffix", [("RGB", (100, 50), ".jpg"), ("L", (30, 90), ".png"),
                                              ("RGBA", (64, 64), ".png"), ("P", (200, 120), ".gif"),
                                              ("RGB", (17, 23), ".bmp"), ("RGB", (80, 80), ".webp"),
                                              ("I;16", (70, 40), ".tif")])
def test_load_image_gives_64x64_rgb_uint8_from_any_size_and_mode(tmp_path, mode, size, suffix):
    path = tmp_path / f"picture{suffix}"
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    image = load_image(path)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert load_image(path, size=32).shape == (32, 32, 3)


def test_load_image_center_crops_instead_of_stretching(tmp_path):
    pixels = np.zeros((50, 150, 3), np.uint8)
    pixels[:, 50:100] = 255  # a white centre square between black side bands
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png").min() >= 250


def test_truncated_or_garbage_files_raise_an_error_naming_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    garbage = tmp_path / "notes.png"
    garbage.write_bytes(b"this is not a picture")
    for path in (truncated, garbage):
        with pytest.raises(ImageReadError) as err:
            load_image(path)
        assert path.name in str(err.value) and "\n" not in str(err.value)


def test_find_user_images_labels_by_first_folder(tmp_path):
    for rel in ("day/a.png", "day/trip/b.jpg", "night/c.png", "dusk/d.png", "loose.png", "night/.DS_Store"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [(path.relative_to(tmp_path).as_posix(), label) for path, label in find_user_images(tmp_path)]
    assert found == [("day/a.png", "day"), ("day/trip/b.jpg", "day"), ("dusk/d.png", "dusk"),
                     ("loose.png", ""), ("night/c.png", "night")]
    assert find_user_images(tmp_path / "absent") == []


def test_inspect_image_reports_facts_and_never_raises(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "ok.png")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ok, junk = inspect_image(tmp_path / "ok.png"), inspect_image(tmp_path / "junk.jpg")
    assert ok == {"file": str(tmp_path / "ok.png"), "decodes": True, "error": None, "width": 40, "height": 30,
                  "mode": "RGB"}
    assert junk["decodes"] is False and junk["error"] and junk["width"] is None
    assert inspect_image(tmp_path / "missing.png")["decodes"] is False
