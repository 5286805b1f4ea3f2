"""Does the face renderer draw faces dlib recognises, in dlib's chip geometry, whose
identities dlib's pretrained encoder can tell apart?

Renders --identities x --images chips with params.yaml's face.render (at 150 px, dlib's own
chip size, and at face.render.size resized to 150 as the pipeline feeds the frozen encoder):
  - detection: dlib's HOG frontal detector + 5-point predictor on each chip (no upsampling,
    then once upsampled); the found landmarks' mean distance to dlib's chip template;
  - identity: dlib's ResNet descriptors (face_recognition_model_v1) of every chip; distances of
    every same-identity pair and every different-identity pair; TAR at FAR = 1e-3 and 1e-2.
Also writes a contact sheet (identities in rows) to --sheet.
    python benchmarks/face_render_check.py [--identities 80] [--images 5] [--sheet reports/face/generate/contact_sheet.png]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.config import load_params  # noqa: E402
from components.face import align, chip, dataset  # noqa: E402
from components.face.sheet import contact_sheet  # noqa: E402

DLIB_SIZE = 150


def detection(chips: np.ndarray) -> dict:
    found0 = [align.landmarks(c, upsample=0) for c in chips]
    found = [f or align.landmarks(c, upsample=1) for f, c in zip(found0, chips)]
    template = chip.template_pixels(DLIB_SIZE)
    errors = [np.linalg.norm(f[0][1] - template, axis=1).mean() for f in found if f]
    return {"rate_no_upsample": round(float(np.mean([bool(f) for f in found0])), 3),
            "rate": round(float(np.mean([bool(f) for f in found])), 3),
            "landmark_error_px_at_150": round(float(np.mean(errors)), 2) if errors else None}, [bool(f) for f in found]


def tar_at(d_same: np.ndarray, d_diff: np.ndarray, far: float) -> float:
    threshold = np.quantile(d_diff, far)
    return float(np.mean(d_same <= threshold))


def identity_check(chips: np.ndarray, labels: np.ndarray) -> dict:
    import dlib
    import face_recognition_models

    model = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    emb = np.array([model.compute_face_descriptor(np.ascontiguousarray(c)) for c in chips])
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    i, j = np.triu_indices(len(emb), 1)
    same = labels[i] == labels[j]
    d_same, d_diff = d[i, j][same], d[i, j][~same]
    return {"same_pairs": int(same.sum()), "different_pairs": int((~same).sum()),
            "same_mean": round(float(d_same.mean()), 3), "different_mean": round(float(d_diff.mean()), 3),
            "tar_at_far_1e-3": round(tar_at(d_same, d_diff, 1e-3), 3), "tar_at_far_1e-2": round(tar_at(d_same, d_diff, 1e-2), 3),
            "dlib_threshold_0.6_far": round(float(np.mean(d_diff <= 0.6)), 4),
            "dlib_threshold_0.6_tar": round(float(np.mean(d_same <= 0.6)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=80)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--sheet", type=Path, default=None)
    args = parser.parse_args()
    from PIL import Image

    p = load_params().face
    ids, counts = np.arange(args.identities), np.full(args.identities, args.images)
    out = {}
    started = time.perf_counter()
    native, frame = dataset.render_identities(p.render.model_copy(update={"size": DLIB_SIZE}), p.seed, ids, counts)
    small, _ = dataset.render_identities(p.render, p.seed, ids, counts)
    out["render_s"] = round(time.perf_counter() - started, 1)
    resized = np.stack([np.asarray(Image.fromarray(c).resize((DLIB_SIZE, DLIB_SIZE), Image.LANCZOS)) for c in small])
    labels = frame["identity"].to_numpy()
    for name, chips in ((f"rendered_at_{DLIB_SIZE}", native), (f"rendered_at_{p.render.size}_resized", resized)):
        figures, found = detection(chips)
        frame[f"found_{name}"] = found
        out[name] = {"detection": figures, "identity": identity_check(chips, labels)}
    found = frame[f"found_rendered_at_{DLIB_SIZE}"]
    out["detection_by_yaw"] = found.groupby(np.digitize(frame["yaw"].abs(), [10, 20])).mean().round(3).rename(
        {0: "|yaw|<10", 1: "10-20", 2: ">=20"}).to_dict()
    out["detection_by_occlusion"] = found.groupby(frame["occlusion"]).mean().round(3).to_dict()
    out["detection_by_skin_tone"] = found.groupby(frame["skin_tone"]).mean().round(3).to_dict()
    if args.sheet:
        contact_sheet(small, frame, args.sheet)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
