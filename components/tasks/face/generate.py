"""The face dataset for the generate stage (components/generate.py): face.generate.identities
rendered identities (components/face/render.py; deterministic by face.seed) and every user
photo under data/raw/faces/<person>/ with exactly one face, aligned to dlib's chip geometry
(components/face/align.py). A photo with no face or several is named by validate_raw, and
again here in summary.json's photos_skipped; none is dropped silently.
Outputs: data/face/generated/{images.npy (uint8 [N, S, S, 3]), manifest.csv (the contract:
image_id, identity, source, file, shot, slices, sha256), photos.csv (dlib's result per photo)}
and reports/face/generate/{examples.png (the contact sheet: identities in rows), summary.json}.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from components import tracking
from components.config import FaceParams
from components.face import dataset
from components.face.sheet import contact_sheet
from components.stage_cli import staged_output


def run(p: FaceParams, raw_dir: Path, out_dir: Path, report_dir: Path) -> dict:
    started = time.perf_counter()
    images, manifest, photos = dataset.build(p, Path(raw_dir), progress=True)
    skipped = photos.loc[photos["error"] != "", "file"].tolist()
    with staged_output(out_dir) as tmp_out, staged_output(report_dir) as tmp_report:
        np.save(tmp_out / "images.npy", images)
        manifest.to_csv(tmp_out / "manifest.csv", index=False)
        photos.to_csv(tmp_out / "photos.csv", index=False)
        contact_sheet(images, manifest, tmp_report / "examples.png")
        counts = manifest["identity"].value_counts()
        summary = {"images": len(manifest), "identities": int(len(counts)),
                   "rendered_images": int((manifest["source"] == "rendered").sum()),
                   "user_images": int((manifest["source"] == "user").sum()),
                   "user_identities": int(manifest.loc[manifest["source"] == "user", "identity"].nunique()),
                   "images_per_identity_min": int(counts.min()), "images_per_identity_max": int(counts.max()),
                   "photos": len(photos), "photos_skipped": skipped,
                   "skin_tone": manifest["skin_tone"].value_counts().sort_index().to_dict()}
        (tmp_report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    seconds = time.perf_counter() - started
    tracking.log_artifacts([report_dir / "examples.png", report_dir / "summary.json"], "generate")
    tracking.log_metrics({"generate.images": len(manifest), "generate.seconds": seconds})
    return {**summary, "seconds": round(seconds, 1), "images_per_second": round(len(manifest) / seconds, 1)}
