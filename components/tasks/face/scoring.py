"""Face, judging side: the operating point on val, the test figures next to dlib's pretrained encoder (on the
rendered test identities and on real photos), plots, and the TAR-at-FAR registry gate."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from components.gate import GateDecision, difference_interval, gate_decision, wilson_interval

EVALUATED_FILE = "encoder.pt"  # the encoder with its threshold and p_same calibration
REAL_FACES = Path("../shared/data/faces/yale")  # real photos, <person>/*.png (15 people x 11 conditions)
REGISTERED_NAME = "face-encoder"


def _real_photos(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned chips and person labels of the real photos with exactly one detected face."""
    from components.face.align import align_file

    chips, labels = [], []
    for path in sorted(REAL_FACES.glob("*/*")):
        faces = align_file(path, size)
        if len(faces) == 1:
            chips.append(faces[0].chip)
            labels.append(path.parent.name)
    return np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8), np.array(labels)


def _sample(labels: np.ndarray, identities: int, seed: int) -> np.ndarray:
    ids = np.unique(labels)
    return np.isin(labels, np.random.default_rng(seed).choice(ids, min(identities, len(ids)), replace=False))


def evaluate(p, data_dir: Path, split_dir: Path, model_path: Path, evaluated_out: Path, out: Path):
    """Threshold (at face.evaluate.target_far) and p_same calibration on every val pair, stored in the model;
    then on test identities: verification, identification, clustering, slices; dlib's encoder (its own
    threshold on val) beside ours on a seeded sample of identities and on the real photos; plots."""
    from components.face import evaluation as ev
    from components.face import figures, verification as ver
    from components.face.backbone import backbone_descriptors
    from components.face.encoder import load_encoder, save_encoder
    from components.split import read_split
    from components.tasks.face.data import load_dataset, split_arrays
    from components.tasks.face.fitting import DESCRIPTOR_CACHE

    e, workers = p.evaluate, len(os.sched_getaffinity(0))  # dlib's descriptors: one process per core
    model = load_encoder(model_path)
    val_x, val_y = split_arrays(data_dir, read_split(split_dir, "val"))
    test_ids = read_split(split_dir, "test")
    test_x, test_y = split_arrays(data_dir, test_ids)
    model.threshold, model.calibration, val = ev.operating_point(model.embed(val_x), val_y, e.target_far)
    model.metadata.update(target_far=e.target_far, **val)
    save_encoder(model, evaluated_out)
    _, manifest = load_dataset(data_dir)
    test_manifest = manifest.set_index("image_id").loc[[int(i) for i in test_ids]].reset_index()
    emb = model.embed(test_x)
    ours, pair_data = ev.evaluate_embeddings(emb, test_y, model.threshold, e, test_manifest)

    # the baseline: dlib's raw descriptors, normalised, threshold on a sample of val identities
    vs, ts = _sample(val_y, e.baseline_identities, e.seed), _sample(test_y, e.baseline_identities, e.seed)
    dlib_val = ev.normalise(backbone_descriptors(val_x[vs], DESCRIPTOR_CACHE, True, workers))
    dlib_threshold = ev.operating_point(dlib_val, val_y[vs], e.target_far)[0]
    dlib_test = backbone_descriptors(test_x[ts], DESCRIPTOR_CACHE, True, workers)
    baseline = {"identities": int(len(np.unique(test_y[ts]))),
                "ours": ev.evaluate_embeddings(emb[ts], test_y[ts], model.threshold, e)[0],
                "dlib": ev.evaluate_embeddings(dlib_test, test_y[ts], dlib_threshold, e)[0]}
    real_x, real_y = _real_photos(test_x.shape[1])
    real = {"photos": len(real_y), "people": int(len(np.unique(real_y)))}
    if len(np.unique(real_y)) >= 2:
        for name, (vectors, t) in {"ours": (model.embed(real_x), model.threshold),
                                   "dlib": (ev.normalise(backbone_descriptors(real_x, workers=workers)),
                                            dlib_threshold)}.items():
            d_same, d_diff = ver.all_pair_distances(vectors, real_y)
            d = np.r_[d_same, d_diff]
            same = np.r_[np.ones(len(d_same), bool), np.zeros(len(d_diff), bool)]
            real[name] = ver.verification_figures(d, same, t, e.target_far, e.folds, e.seed)

    v = ours["verification"]
    metrics = {"threshold": model.threshold, "calibration": list(model.calibration), "val": val, "test": ours,
               "baseline_rendered": baseline, "real_photos": real}
    headline = {"tar_at_far_test": v["tar_at_far"], "kfold_accuracy_test": v["kfold_accuracy"],
                "roc_auc_test": v["roc_auc"], "eer_test": v["eer"], "rank1_test": ours["identification"]["rank1"],
                "cluster_pairwise_f_test": ours["clustering"]["pairwise_f"],
                "dlib_tar_at_far_test_sample": baseline["dlib"]["verification"]["tar_at_far"],
                "threshold": model.threshold}
    for name in ("ours", "dlib"):
        if name in real:
            headline[f"real_kfold_accuracy_{name}"] = real[name]["kfold_accuracy"]

    d, same, pairs = pair_data["distance"], pair_data["same"], pair_data["pairs"]
    dlib_pairs, dlib_same = ver.verification_pairs(test_y[ts], e.max_same_pairs, e.different_pairs, e.seed)
    dlib_d = ver.pair_distances(ev.normalise(dlib_test), dlib_pairs)
    figures.plot_roc({"ours": (d[same], d[~same]), f"dlib ({baseline['identities']} identities)":
                      (dlib_d[dlib_same], dlib_d[~dlib_same])}, out / "roc.png", e.target_far)
    figures.plot_distance_histograms(d, same, model.threshold, out / "distances.png", "test pair distances (ours)")
    figures.plot_projection(emb, test_y, out / "projection.png", seed=e.seed)
    figures.plot_worst_pairs(test_x, pairs, d, same, model.threshold, out / "worst_pairs.png", e.worst_pairs)
    return headline, metrics


def registered_name(p) -> str:
    return REGISTERED_NAME


def version_tags(p) -> dict:
    return {"target_far": f"{p.evaluate.target_far:g}"}


def load_evaluated(ref: str):
    from components.face.encoder import load_encoder
    from components.refs import load_model_ref
    return load_model_ref(ref, EVALUATED_FILE, load_encoder)


def log_model(encoder_path: Path):
    from components.registry import log_face_encoder
    return log_face_encoder(encoder_path)


def gate_figures(model, p, gate_dir: Path) -> dict:
    """TAR at face.gate.target_far over every pair of the gate set, at the FAR threshold of the gate set's own
    different pairs (both models at the same operating point), with its Wilson interval over the same pairs."""
    from components.face import verification as ver
    from components.gate_data import read_gate_info
    from components.tasks.face.data import load_dataset

    g, info = p.gate, read_gate_info(gate_dir)
    images, manifest = load_dataset(Path(gate_dir))
    d_same, d_diff = ver.all_pair_distances(model.embed(np.asarray(images)), manifest["identity"].to_numpy())
    tar, _ = ver.tar_at_far(d_same, d_diff, g.target_far)
    low, high = wilson_interval(tar * len(d_same), len(d_same), g.confidence)
    figures = {"gate_hash": info["gate_hash"], "same_pairs": len(d_same), "different_pairs": len(d_diff),
               "tar": tar, "tar_low": round(low, 5), "tar_high": round(high, 5), "threshold": model.threshold}
    return {**figures, "meets_target": bool(tar >= g.target_tar)}


def decide(challenger: dict, champion: dict | None, p) -> GateDecision:
    """No champion: the challenger takes it. Else it must be measured on the same gate set and its TAR at the
    target FAR must beat the champion's beyond the noise (the difference interval wholly above zero)."""
    g, new, old = p.gate, challenger, champion

    def decision(promote: bool, reason: str) -> GateDecision:
        return gate_decision(promote, reason, new, old, lambda f: f["tar"] >= g.target_tar,
                             lambda f: f"gate TAR {f['tar']:.4f} at FAR {g.target_far:g}", f"TAR >= {g.target_tar:g}")

    if old is None:
        return decision(True, f"first version, no champion yet: TAR {new['tar']:.4f}")
    if new["gate_hash"] != old["gate_hash"]:
        return decision(False, "kept champion: the two were not measured on the same gate set")
    low, high = difference_interval(new["tar"], (new["tar_low"], new["tar_high"]),
                                    old["tar"], (old["tar_low"], old["tar_high"]))
    figures = f"TAR {new['tar']:.5f} vs {old['tar']:.5f} (difference in [{low:+.5f}, {high:+.5f}])"
    if not low > 0:
        return decision(False, f"kept champion (TAR not better beyond noise): {figures}")
    return decision(True, f"beats champion: {figures}")
