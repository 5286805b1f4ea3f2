"""The face data side: the renderer (deterministic, identities consistent, dlib's chip
geometry), the aligner on a real photo, and bad photos named in the per-file table."""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.config import load_params
from components.face import align, chip, dataset, identities
from components.vision.images import ImageReadError
from conftest import PROJECT_ROOT, YALE, needs_yale

P = load_params(PROJECT_ROOT / "params.yaml").face
PHOTO = YALE / "subject01" / "normal.png"
# no pose, accessories or camera: what is left to vary is light, expression, age and hair
CLEAN = P.render.model_copy(update=dict(
    yaw_std_deg=0.0, pitch_std_deg=0.0, roll_std_deg=0.0, glasses_wearers=0.0, glasses_switch=0.0, beard_share=0.0,
    beard_switch=0.0, occlusion=0.0, blur_px=[0.0, 0.0], noise_std=[0.0, 0.0], jpeg_share=0.0, alignment_jitter=0.0,
    hairstyle_change=0.0, grey_share=0.0))


def test_renderer_is_deterministic_by_seed_and_identity():
    images, frame = dataset.render_identities(P.render, 0, np.array([3, 7]), np.array([2, 3]))
    again, _ = dataset.render_identities(P.render, 0, np.array([3, 7]), np.array([2, 3]))
    alone, _ = dataset.render_identities(P.render, 0, np.array([7]), np.array([3]))
    other, _ = dataset.render_identities(P.render, 1, np.array([3, 7]), np.array([2, 3]))
    assert images.shape == (5, P.render.size, P.render.size, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again)
    assert np.array_equal(images[2:], alone)  # identity 7 does not depend on who else is rendered
    assert not np.array_equal(images, other)
    assert list(frame["identity"]) == ["r00003"] * 2 + ["r00007"] * 3 and list(frame["shot"]) == [0, 1, 0, 1, 2]
    assert frame.groupby("identity")["skin_tone"].nunique().eq(1).all()
    assert len({image.tobytes() for image in images}) == 5  # every image of an identity differs


def test_identity_traits_are_fixed_and_differ_between_identities_and_seeds():
    a = identities.sample_identities(0, np.array([5, 9]), 0.25, 0.25)
    b = identities.sample_identities(0, np.array([9]), 0.25, 0.25)
    c = identities.sample_identities(1, np.array([9]), 0.25, 0.25)
    assert all(np.array_equal(a[name][1:], b[name]) for name in a)
    assert a["face_rx"][0] != a["face_rx"][1] and c["face_rx"][0] != b["face_rx"][0]


def test_images_of_one_identity_are_closer_than_images_of_two():
    """With pose, accessories and camera off, light, expression and age still vary, yet an
    image's nearest image (in pixels) is 5x more often its own identity's than by chance."""
    n, k = 12, 4
    images, frame = dataset.render_identities(CLEAN, 0, np.arange(n), np.full(n, k))
    grey = np.stack([np.asarray(Image.fromarray(im).convert("L").resize((32, 32), Image.BILINEAR), float) for im in images])
    flat = grey.reshape(len(grey), -1)
    flat = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
    d = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    labels = frame["identity"].to_numpy()
    same = labels[:, None] == labels[None]
    assert d[same & np.isfinite(d)].mean() < 0.9 * d[~same].mean()
    chance = (k - 1) / (n * k - 1)
    assert np.mean(labels[d.argmin(1)] == labels) > 5 * chance


def test_rendered_chip_is_in_dlibs_geometry():
    """dlib's own detector and 5-point model find a clean rendered face at 150 px, and its
    landmarks land where dlib's chip template puts them."""
    images, _ = dataset.render_identities(CLEAN.model_copy(update={"size": 150}), 0, np.arange(4), np.ones(4, int))
    found = [align.landmarks(image) for image in images]
    assert sum(len(f) == 1 for f in found) >= 3
    for faces in found:
        if faces:
            assert np.linalg.norm(faces[0][1] - chip.template_pixels(150), axis=1).mean() < 6.0  # px, of 150


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([4.0, -2.0])
    m = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = chip.TEMPLATE @ m.T + shift
    found = chip.similarity(chip.TEMPLATE, moved)
    assert np.allclose(found[:, :2], m) and np.allclose(found[:, 2], shift)


@needs_yale
def test_align_finds_the_one_face_of_a_real_photo_and_crops_on_request():
    faces = align.align_file(PHOTO, 64)
    assert len(faces) == 1 and faces[0].chip.shape == (64, 64, 3) and faces[0].chip.dtype == np.uint8
    x, y, w, h = faces[0].box
    width, height = Image.open(PHOTO).size
    assert 0 <= x < x + w <= width + 20 and 0 <= y < y + h <= height + 20 and w > 40
    cropped = align.align_file(PHOTO, 64, cropped=True)
    assert len(cropped) == 1 and cropped[0].box == (0, 0, width, height) and cropped[0].chip.shape == (64, 64, 3)


def test_align_names_an_unreadable_file_and_finds_no_face_in_a_blank_one(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        align.align_file(bad, 64)
    blank = tmp_path / "blank.png"
    Image.new("L", (120, 90), 128).save(blank)  # greyscale, made RGB on the way in
    assert align.align_file(blank, 64) == []


@needs_yale
def test_photo_table_reports_every_bad_photo_by_name(tmp_path):
    raw = tmp_path / "faces"
    (raw / "alice").mkdir(parents=True)
    (raw / "bob").mkdir()
    shutil.copy(PHOTO, raw / "alice" / "one.png")
    (raw / "bob" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    Image.new("RGB", (100, 100), (90, 120, 150)).save(raw / "bob" / "wall.png")
    Image.open(PHOTO).save(raw / "stray.png")  # not in a person's folder
    table, chips = dataset.photo_table(raw, 64, cropped=False)
    rows = table.set_index("file")
    assert list(rows.index) == ["alice/one.png", "bob/broken.jpg", "bob/wall.png", "stray.png"]
    assert rows.loc["alice/one.png", "faces"] == 1 and rows.loc["alice/one.png", "error"] == ""
    assert not rows.loc["bob/broken.jpg", "decodes"] and "not a readable image" in rows.loc["bob/broken.jpg", "error"]
    assert rows.loc["bob/wall.png", "faces"] == 0 and rows.loc["bob/wall.png", "error"] == "no face found"
    assert "folder" in rows.loc["stray.png", "error"]
    assert [c is not None for c in chips] == [True, False, False, False]


@needs_yale
def test_dataset_holds_rendered_identities_then_user_photos_in_the_contracts_columns(tmp_path):
    (tmp_path / "carol").mkdir()
    shutil.copy(PHOTO, tmp_path / "carol" / "a.png")
    p = P.model_copy(update={"generate": P.generate.model_copy(update={"identities": 3, "images_per_identity": [2, 3]})})
    images, manifest, photos = dataset.build(p, tmp_path)
    assert list(manifest.columns[:4]) == ["image_id", "identity", "source", "file"]
    assert {"skin_tone", "age", "glasses", "beard", "yaw", "pitch", "roll", "sha256"} <= set(manifest.columns)
    assert list(manifest["image_id"]) == list(range(len(images))) and images.shape[1:] == (64, 64, 3)
    assert manifest["identity"].iloc[-1] == "carol" and manifest["source"].iloc[-1] == "user"
    assert manifest["file"].iloc[-1] == "carol/a.png" and (manifest["source"] == "rendered").sum() == len(images) - 1
    assert manifest.loc[manifest["source"] == "rendered", "identity"].nunique() == 3 and len(photos) == 1


@needs_yale
def test_face_stages_generate_validate_split_by_identity_and_gate(tmp_path):
    """The data stages on tiny data: generate (rendered + one user person), both validations
    (a person with too few photos and a photo without a face are named), the split by
    identity, and a gate set whose identities are not training ones."""
    from components import gate_data, split, validate
    from components.stage_cli import StageError
    from components.tasks import load

    raw = tmp_path / "raw"
    (raw / "dave").mkdir(parents=True)
    for k in range(5):
        shutil.copy(PHOTO, raw / "dave" / f"{k}.png")
    p = P.model_copy(update={
        "generate": P.generate.model_copy(update={"identities": 12, "images_per_identity": [5, 6], "workers": 1}),
        "gate": P.gate.model_copy(update={"identities": 10, "images_per_identity": 3})})
    assert validate.run("face", "raw", p, raw, tmp_path / "vr")["success"]
    task = load("face")
    figures = task.generate(p, raw, tmp_path / "gen", tmp_path / "rep")
    assert figures["user_identities"] == 1 and figures["photos_skipped"] == [] and (tmp_path / "rep" / "examples.png").is_file()
    # every image of dave is the same pixels: the duplicate check names them
    with pytest.raises(StageError, match="no_duplicates"):
        validate.run("face", "generated", p, tmp_path / "gen", tmp_path / "vg")
    Image.new("RGB", (80, 80), (200, 180, 160)).save(raw / "dave" / "wall.png")
    with pytest.raises(StageError, match="wall.png"):
        validate.run("face", "raw", p, raw, tmp_path / "vr2")

    clean = P.model_copy(update={"generate": p.generate, "split": P.split})
    task.generate(clean, tmp_path / "none", tmp_path / "gen2", tmp_path / "rep2")
    assert validate.run("face", "generated", clean, tmp_path / "gen2", tmp_path / "vg2")["success"]
    counts = split.run("face", clean, tmp_path / "gen2", tmp_path / "split")
    manifest = pd.read_csv(tmp_path / "gen2" / "manifest.csv")
    owner = {}
    for name in ("train", "val", "test"):
        ids = [int(i) for i in split.read_split(tmp_path / "split", name)]
        for person in manifest.set_index("image_id").loc[ids, "identity"]:
            assert owner.setdefault(person, name) == name  # no identity in two splits
    assert sum(counts.values()) == len(manifest) and counts["val"] > 0 and counts["test"] > 0
    # a tune trial's subset is whole people (every image of each, in split order), about 12 images, fixed
    train_ids = split.read_split(tmp_path / "split", "train")
    sub = task.trial_subset(clean, tmp_path / "gen2", train_ids, 12)
    person = manifest.set_index("image_id")["identity"]
    chosen = set(person.loc[[int(i) for i in sub]])
    assert 12 <= len(sub) < len(train_ids) and sub == [i for i in train_ids if person[int(i)] in chosen]
    assert min(person.loc[[int(i) for i in sub]].value_counts()) >= 5
    assert task.trial_subset(clean, tmp_path / "gen2", train_ids, 12) == sub

    gate = gate_data.run("face", p, tmp_path / "gate")
    gate_manifest = pd.read_csv(tmp_path / "gate" / "manifest.csv")
    assert len(gate_manifest) == 30 and not set(gate_manifest["identity"]) & set(manifest["identity"])
    assert gate["images"] == 30
