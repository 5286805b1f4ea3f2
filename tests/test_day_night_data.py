"""The day-night data stages: generate (synthetic scenes or the user's images), validation
that names bad images, and the stratified 80/20 split that keeps duplicates together."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components import split, validate
from components.tasks.day_night import generate as generate_scenes
from components.config import SceneParams, load_params
from components.stage_cli import StageError
from conftest import PROJECT_ROOT, classifier_config

P = load_params(PROJECT_ROOT / "params.yaml").day_night.model_copy(update={"generate": SceneParams(images=240, unseen_style_images=40)})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("day-night")
    generate_scenes.run(P, out / "no-raw", out / "generated", out / "report")
    return out / "generated"


def _copy(dataset, tmp_path):
    images, manifest = np.load(dataset / "images.npy"), pd.read_csv(dataset / "manifest.csv")
    return images, manifest, tmp_path / "copy"


def _save(images, manifest, folder):
    folder.mkdir()
    np.save(folder / "images.npy", images)
    manifest.to_csv(folder / "manifest.csv", index=False)
    return folder


def test_generated_dataset_is_balanced_and_passes_validation(dataset, tmp_path):
    manifest = pd.read_csv(dataset / "manifest.csv")
    seen = manifest[manifest["style"] != "painted"]  # then 40 scenes in the held-out style
    assert len(manifest) == 280 and len(seen) == 240 and (seen.label == "night").sum() == 120
    assert np.load(dataset / "images.npy").shape == (280, 64, 64, 3)
    assert (dataset.parent / "report" / "examples.png").stat().st_size > 0
    assert (dataset.parent / "report" / "styles.png").stat().st_size > 0
    result = validate.run("day-night", "generated", P, dataset, tmp_path / "report")
    assert result["success"] and result["files"] == 280
    checks = json.loads((tmp_path / "report" / "result.json").read_text())["checks"]
    assert {"no_duplicates", "not_blank", "label_set", "class_balance", "dtype_uint8"} <= {c["check"] for c in checks}


def test_validation_names_duplicate_blank_and_mislabelled_images(dataset, tmp_path):
    images, manifest, folder = _copy(dataset, tmp_path)
    images[1] = images[0]          # a duplicate
    images[2] = 128                # a blank frame
    manifest.loc[3, "label"] = "dusk"  # not a label
    _save(images, manifest, folder)
    with pytest.raises(StageError) as err:
        validate.run("day-night", "generated", P, folder, tmp_path / "report")
    message = str(err.value)
    assert "no_duplicates (scene-000000, scene-000001)" in message
    assert "not_blank (scene-000002)" in message and "label_set (scene-000003)" in message
    assert np.array_equal(np.load(folder / "images.npy")[2], images[2])  # nothing changed or dropped


def test_validation_rejects_wrong_shape_and_unbalanced_data(dataset, tmp_path):
    images, manifest, folder = _copy(dataset, tmp_path)
    keep = manifest.index[manifest.label == "day"].tolist() + manifest.index[manifest.label == "night"].tolist()[:20]
    _save(images[keep][:, :32, :32], manifest.loc[keep], folder)
    with pytest.raises(StageError, match=r"height .*width .*class_balance \(observed 0\.12"):
        validate.run("day-night", "generated", P, folder, tmp_path / "report")


def test_unreadable_or_misplaced_user_images_are_reported_not_dropped(tmp_path):
    raw = tmp_path / "day_night"
    for folder in ("day", "night", "dusk"):
        (raw / folder).mkdir(parents=True)
    Image.new("RGB", (80, 60), (120, 160, 230)).save(raw / "day" / "sky.png")
    Image.new("RGB", (8, 8), (5, 5, 20)).save(raw / "night" / "tiny.png")
    (raw / "night" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (64, 64), (200, 100, 50)).save(raw / "dusk" / "sunset.png")
    with pytest.raises(StageError) as err:
        validate.run("day-night", "raw", P, raw, tmp_path / "report")
    message = str(err.value)
    assert "readable_image" in message and "broken.jpg" in message
    assert "label_folder" in message and "sunset.png" in message
    assert "min_width" in message and "tiny.png" in message
    assert (raw / "night" / "broken.jpg").exists() and (raw / "dusk" / "sunset.png").exists()
    assert validate.run("day-night", "raw", P, tmp_path / "absent", tmp_path / "r2")["success"]


def test_user_images_replace_the_renderer(tmp_path):
    raw = tmp_path / "day_night"
    rng = np.random.default_rng(0)
    for label, level in (("day", 200), ("night", 30)):
        (raw / label).mkdir(parents=True)
        for i in range(6):
            size = (40 + 17 * i, 90 - 5 * i)
            pixels = np.clip(level + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(raw / label / f"{label}{i}.{'png' if i % 2 else 'jpg'}")
    out = tmp_path / "generated"
    summary = generate_scenes.run(P, raw, out, tmp_path / "report")
    manifest = pd.read_csv(out / "manifest.csv")
    assert summary["source"] == "user" and summary["images"] == 12
    assert np.load(out / "images.npy").shape == (12, 64, 64, 3)
    assert sorted(manifest.label) == ["day"] * 6 + ["night"] * 6 and set(manifest.source) == {"user"}


def test_split_is_stratified_80_20_with_val_from_train(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    manifest = pd.DataFrame({"image_id": [f"scene-{i:06d}" for i in range(n)],
                             "label": np.where(np.arange(n) % 2, "night", "day"),
                             "condition": rng.choice(["clear", "dusk_dawn", "overcast_day", "lit_city_night"], n),
                             "sha256": [f"h{i}" for i in range(n)]})
    manifest.loc[10:14, "sha256"] = "same"  # five identical images
    (tmp_path / "data").mkdir()
    manifest.to_csv(tmp_path / "data" / "manifest.csv", index=False)
    counts = split.run("day-night", P, tmp_path / "data", tmp_path / "split")
    assert counts["train"] + counts["val"] + counts["test"] == n
    assert counts["test"] / n == pytest.approx(0.2, abs=0.02) and counts["val"] / n == pytest.approx(0.1, abs=0.02)
    where = {i: name for name in ("train", "val", "test") for i in (tmp_path / "split" / f"{name}.txt").read_text().split()}
    manifest["split"] = manifest.image_id.map(where)
    assert manifest.loc[10:14, "split"].nunique() == 1
    shares = manifest.groupby("split").label.apply(lambda s: (s == "night").mean())
    assert shares.max() - shares.min() < 0.03
    mix = pd.crosstab(manifest.split, manifest.condition, normalize="index")
    assert (mix.max() - mix.min()).max() < 0.04


def test_the_held_out_style_is_all_in_test_unseen_style_and_never_in_train(dataset, tmp_path):
    counts = split.run("day-night", P, dataset, tmp_path / "split")
    manifest = pd.read_csv(dataset / "manifest.csv").set_index("image_id")
    styles = {name: set(manifest.loc[(tmp_path / "split" / f"{name}.txt").read_text().split(), "style"])
              for name in ("train", "val", "test", "test_unseen_style")}
    assert styles["test_unseen_style"] == {"painted"} and counts["test_unseen_style"] == 40
    assert "painted" not in styles["train"] | styles["val"] | styles["test"]


def test_the_brightness_baseline_is_reported_next_to_the_model_on_every_split(dataset, tmp_path):
    from components.tasks.day_night import scoring
    from components.vision.model import build_classifier

    split.run("day-night", P, dataset, tmp_path / "split")
    model = build_classifier(classifier_config(kind="cnn", cnn_channels=(4,)), seed=0)
    table = scoring.compare_with_baseline(model, P, dataset, tmp_path / "split", pd.read_csv(dataset / "manifest.csv"))
    assert set(table) == {"train", "val", "test", "test_unseen_style"}
    for row in table.values():
        assert set(row) == {"model", "brightness"} and row["brightness"]["images"] == row["model"]["images"] > 0
        assert 0.0 <= row["brightness"]["accuracy"] <= 1.0 and "dusk_dawn" in row["brightness"]["by_condition"]
    assert table["train"]["brightness"]["accuracy"] > 0.8  # fitted there: the floor is a real one
