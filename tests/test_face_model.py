"""Face encoder (model side): the triplet loss and miner on hand-built embeddings, the P x K sampler,
verification figures on hand-built distances, a tiny fit, and the saved format."""
import numpy as np
import pytest
import torch

from components.config import FaceTrain, load_params
from components.face import verification as ver
from components.face.backbone import backbone_descriptors
from components.face.encoder import EncoderConfig, build_encoder, load_encoder, save_encoder
from components.face.training import augment, fit, learning_rate
from components.face.triplet import mine_triplets, pk_batches, triplet_loss


def test_triplet_loss_value_and_zero_when_margin_met():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.1, 0.0]])  # d_pos^2 = 1, 0.01
    n = torch.tensor([[0.0, 1.1], [0.0, 1.0]])  # d_neg^2 = 1.21, 1
    loss = triplet_loss(a, p, n, margin=0.5)
    assert loss[0].item() == pytest.approx(1 - 1.21 + 0.5)
    assert loss[1].item() == 0.0  # 0.01 - 1 + 0.5 < 0: the margin is met


def test_semi_hard_picks_the_closest_negative_beyond_the_positive():
    # anchor 0 and positive 1 (identity 0) at distance 1; negatives of identity 1 at 0.5 (hard), 1.05 and 1.1
    # (semi-hard with margin 0.3 on squared distances: 1 < d^2 < 1.3) and 3 (easy).
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 1.05], [0.0, 1.1], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    a, p, n = mine_triplets(emb, labels, margin=0.3)
    row = [k for k in range(len(a)) if a[k] == 0 and p[k] == 1][0]
    assert n[row].item() == 3  # d^2 = 1.1025: the closest semi-hard, not the hard one (index 2)
    a, p, n = mine_triplets(emb, labels, margin=0.3, hard_share=1.0, generator=torch.Generator().manual_seed(0))
    row = [k for k in range(len(a)) if a[k] == 0 and p[k] == 1][0]
    assert n[row].item() == 2  # the curriculum's hardest negative
    assert all(labels[a] == labels[p]) and all(labels[a] != labels[n]) and all(a != p)


def test_pk_sampler_batches_p_identities_of_k_images_covering_every_image():
    labels = np.repeat(np.arange(12), [5, 5, 5, 5, 4, 4, 4, 4, 8, 8, 1, 6])  # identity 10 has one image
    batches = pk_batches(labels, p=4, k=4, rng=np.random.default_rng(0))
    assert batches and all(len(b) == 16 for b in batches)
    for b in batches:
        _, counts = np.unique(labels[b], return_counts=True)
        assert all(c % 4 == 0 for c in counts)  # identities come in chunks of K
    seen = np.unique(np.concatenate(batches))
    assert 10 not in labels[seen]  # no positive: left out
    assert len(seen) >= 0.8 * (len(labels) - 1)  # all but the dropped last batch
    again = pk_batches(labels, p=4, k=4, rng=np.random.default_rng(0))
    assert all((x == y).all() for x, y in zip(batches, again))


def test_tar_at_far_eer_and_kfold_on_hand_built_distances():
    d_same = np.array([0.1, 0.2, 0.3, 0.9])
    d_diff = np.linspace(0.5, 1.5, 1000)  # FAR 1e-3 allows one false accept: the threshold sits below 0.501
    tar, t = ver.tar_at_far(d_same, d_diff, 1e-3)
    assert 0.5005 < t < 0.5015 and tar == 0.75
    assert np.mean(d_diff <= t) <= 1e-3
    assert ver.equal_error_rate(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 0.0  # separable
    assert ver.equal_error_rate(np.array([0.1, 0.4]), np.array([0.3, 0.5])) == pytest.approx(0.5)
    d = np.r_[np.full(50, 0.2), np.full(50, 0.8)]
    same = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    assert ver.kfold_accuracy(d, same, folds=10) == (1.0, 0.0)
    same[0], same[-1] = False, True  # two mislabelled pairs cost two pairs of accuracy
    assert ver.kfold_accuracy(d, same, folds=10)[0] == pytest.approx(0.98)
    # balanced pairs: with 5% same pairs and no signal, saying "different" to all is not 95% accurate
    rng = np.random.default_rng(0)
    d, same = rng.uniform(size=2000), np.arange(2000) < 100
    assert ver.kfold_accuracy(d, same, folds=10)[0] < 0.65
    intercept, slope = ver.fit_calibration(np.r_[np.linspace(0, 0.6, 50), np.linspace(0.4, 1.2, 50)],
                                           np.r_[np.ones(50, bool), np.zeros(50, bool)])
    assert slope < 0 and 0.4 < -intercept / slope < 0.7  # p_same falls with distance, 0.5 near the overlap


def test_verification_pairs_are_deterministic_and_labelled():
    labels = np.repeat(np.arange(20), 5)
    pairs, same = ver.verification_pairs(labels, max_same=100, n_different=300, seed=3)
    assert same.sum() == 100 and (~same).sum() == 300
    assert ((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == same).all()
    again = ver.verification_pairs(labels, max_same=100, n_different=300, seed=3)
    assert (again[0] == pairs).all()


def _tiny_data(n_ids=8, per_id=6, size=16, seed=0):
    """Each identity is a colour and a blob position; images add noise."""
    rng = np.random.default_rng(seed)
    chips, labels = [], []
    for ident in range(n_ids):
        base = np.zeros((size, size, 3))
        base[..., :] = rng.uniform(40, 215, 3)
        y, x = rng.integers(2, size - 6, 2)
        base[y: y + 5, x: x + 5] = 255 - base[y, x]
        for _ in range(per_id):
            chips.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
            labels.append(ident)
    return np.stack(chips), np.array(labels)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_fit_lowers_loss_and_save_load_embeds_identically(tmp_path, precision):
    """bf16 trains under an autocast in channels-last: the encoder it returns is fp32 and contiguous, as a loaded one."""
    chips, labels = _tiny_data()
    model = build_encoder(EncoderConfig(kind="cnn", image_size=16, width=8, depth=2), seed=0)
    x = model.inputs(chips)
    t = FaceTrain(identities_per_batch=4, images_per_identity=3, lr=3e-3, max_epochs=6, patience=6, augment=0.2,
                  curriculum_epochs=3, precision=precision)
    result = fit(model, x, labels, x, labels, t, target_far=0.1, seed=0)
    assert result.precision == precision
    assert all(w.dtype == torch.float32 and w.is_contiguous() for w in model.parameters())
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert {"active_share", "d_pos", "d_neg", "spread", "val_tar", "val_loss"} <= set(result.history[0])
    model.threshold, model.calibration = 0.8, (4.0, -5.0)
    save_encoder(model, tmp_path / "encoder.pt")
    loaded = load_encoder(tmp_path / "encoder.pt")
    emb = loaded.embed(chips)
    assert emb.shape == (len(chips), 128) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert np.array_equal(emb, model.embed(chips))
    assert loaded.threshold == 0.8 and loaded.calibration == (4.0, -5.0)
    d, p, same = loaded.verify(emb[:2], emb[[1, 7]])
    assert same.tolist() == list(d <= 0.8) and np.all((0 < p) & (p < 1))
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="not a cs230-face-encoder/2 checkpoint"):
        load_encoder(tmp_path / "junk.pt")


def test_cosine_schedule_falls_from_lr_to_zero_at_the_last_epoch_and_constant_holds():
    t = FaceTrain(lr=0.002, max_epochs=4)
    assert [learning_rate(t, e) for e in (0, 2, 4, 5)] == pytest.approx([0.002, 0.001, 0.0, 0.0])
    assert learning_rate(t, 1) > learning_rate(t, 1.5) > learning_rate(t, 3)
    held = t.model_copy(update={"lr_schedule": "constant"})
    assert {learning_rate(held, e) for e in (0, 2, 3.9)} == {0.002}


def test_dlib_head_starts_as_dlib_and_embeds_chips_of_any_size():
    chips, _ = _tiny_data(n_ids=2, per_id=1, size=40)
    head_cfg = EncoderConfig.from_params(load_params().face.model, kind="dlib_head", width=32, depth=1)
    head = build_encoder(head_cfg, seed=0)
    desc = head.inputs(chips)
    assert desc.shape == (2, 128)
    expected = desc / np.linalg.norm(desc, axis=1, keepdims=True)
    assert np.allclose(head.embed(chips), expected, atol=1e-5)  # zero-initialised correction


def test_augment_turns_a_share_of_chips_grey_and_strength_zero_leaves_them():
    x = torch.rand(400, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, 0.0, gen), x)
    y = augment(x, 1.0, gen)
    grey = ((y[:, 0] == y[:, 1]) & (y[:, 1] == y[:, 2])).flatten(1).all(1)
    assert 0.12 < float(grey.float().mean()) < 0.28 and not torch.equal(y[~grey], x[~grey])


def test_backbone_cache_and_worker_processes_give_the_same_descriptors(tmp_path, monkeypatch):
    from components.face import backbone

    chips, _ = _tiny_data(n_ids=3, per_id=1, size=32)
    first = backbone_descriptors(chips, tmp_path)
    assert len(list(tmp_path.rglob("*.npy"))) == 3
    assert np.array_equal(backbone_descriptors(chips[::-1], tmp_path), first[::-1])
    monkeypatch.setattr(backbone, "BATCH", 1)  # three batches over two processes, in order
    assert np.array_equal(backbone_descriptors(chips, workers=2), first)


def test_encoder_params_and_checkpoint_configs_are_strict():
    with pytest.raises(ValueError, match="depth"):
        load_params(overrides=["face.model.depth=0"])  # a cnn of no blocks
    with pytest.raises(ValueError, match="model.image_size"):
        load_params(overrides=["face.model.image_size=32", "face.tune.space.depth=[6]"])  # 6 pools of 32 px
    with pytest.raises(ValueError, match="lacks"):
        EncoderConfig.from_dict({"kind": "cnn", "width": 8, "depth": 2})
    with pytest.raises(ValueError, match="unknown"):
        EncoderConfig.from_dict({"kind": "cnn", "image_size": 16, "width": 8, "depth": 2, "layers": 3})
