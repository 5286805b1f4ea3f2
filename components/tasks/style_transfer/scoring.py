"""Style transfer, judging side: the fast network against Gatys on held-out content, and the gate
(grid.png and frontier.png reach MLflow with the evaluate stage's report files).

Scores come from style_transfer.score_features, a feature network the fast network never trained
against (components/style/evaluation.py), so the figures are not the loss grading itself.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from components.config import StyleTransferParams
from components.gate import GateDecision, bootstrap_interval, difference_interval, gate_decision
from components.tasks.style_transfer.data import load_dataset, split_images, style_name

EVALUATED_FILE = "style_net.pt"  # components/stylize.py FAST_FILE: the network with its style image


def _scorer(p: StyleTransferParams):
    from components.style import evaluation
    from components.style.features import load_features
    layers = getattr(p.layers, p.score_features)
    net = load_features(p.score_features, p.pooling, p.seed)
    return lambda generated, content, style: evaluation.score(net, layers.content, list(layers.style),
                                                                generated, content, style)


def evaluate(p: StyleTransferParams, data_dir: Path, split_dir: Path, model_path: Path, evaluated_out: Path,
             out: Path) -> tuple[dict, dict]:
    """On the first evaluation.images test images: the fast network and Gatys (at the `loss`
    weights) on the same (C, S) pairs, scored; grid.png (C, S, Gatys, fast), frontier.png (Gatys'
    style against content distance over evaluation.frontier_weights on the first image, the fast
    network's mean as a star)."""
    import torch

    from components.split import read_split
    from components.style import evaluation, figures
    from components.style.io import load_fast, save_fast, to_tensor, to_uint8
    from components.stylize import perceptual_loss, run_gatys

    net, meta = load_fast(model_path)
    ids = read_split(split_dir, "test")[:p.evaluation.images]
    _, _, style_rgb = load_dataset(data_dir)
    style = to_tensor(style_rgb)
    score, loss, rows, tiles = _scorer(p), perceptual_loss(p, style), [], []
    for rgb in split_images(data_dir, ids):
        content = to_tensor(rgb)
        started = time.perf_counter()
        with torch.no_grad():
            fast = net(content)
        fast_s = time.perf_counter() - started
        started = time.perf_counter()
        gatys, _ = run_gatys(p, content, style, loss=loss)
        gatys_s = time.perf_counter() - started
        rows.append({"fast": {**score(fast, content, style), "seconds": fast_s},
                     "gatys": {**score(gatys, content, style), "seconds": gatys_s}})
        tiles.append([rgb, style_rgb, to_uint8(gatys), to_uint8(fast)])
    summary = {k: round(v, 5) for k, v in evaluation.summarise(rows).items()}
    first = to_tensor(split_images(data_dir, ids[:1])[0])
    points = []
    for weight in p.evaluation.frontier_weights:
        image, _ = run_gatys(p, first, style, loss=perceptual_loss(p, style, style_weight=weight))
        points.append({"style_weight": weight, **score(image, first, style)})
    figures.grid(tiles, out / "grid.png")
    figures.frontier(points, {k: summary[f"fast_{k}"] for k in ("style_distance", "content_distance")},
                     out / "frontier.png")
    save_fast(net, evaluated_out, {**meta, "style_image": torch.from_numpy(np.ascontiguousarray(style_rgb))})
    headline = {k: summary[k] for k in ("fast_style_distance", "gatys_style_distance", "fast_content_distance",
                                        "gatys_content_distance", "style_distance_ratio", "content_distance_ratio",
                                        "fast_ssim", "fast_seconds", "gatys_seconds")}
    return headline, {"test_images": len(ids), "style": meta.get("style"), "summary": summary, "per_image": rows,
                      "frontier": points}


# ------------------------------------------------------------------------------ register

def registered_name(p: StyleTransferParams) -> str:
    return f"style-{style_name(p)}"


def version_tags(p: StyleTransferParams) -> dict:
    return {"style": style_name(p), "features": p.features, "score_features": p.score_features}


def load_evaluated(ref: str):
    from components.stylize import load_style_model
    return load_style_model(ref)


def log_model(path: Path):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from components.registry import _log_pyfunc
    from components.tasks.style_transfer.pyfunc import StyleNetModel
    spec = Schema([TensorSpec(np.dtype(np.uint8), (1, -1, -1, 3))])
    return _log_pyfunc(path, EVALUATED_FILE, StyleNetModel(), ModelSignature(inputs=spec, outputs=spec),
                       np.zeros((1, 32, 32, 3), np.uint8), ["pillow"])


def gate_figures(model, p: StyleTransferParams, gate_dir: Path) -> dict:
    """The network's mean style and content distance on the gate set's content images (against its
    own style image, at gate.size), each with a seeded bootstrap interval at gate.confidence."""
    import torch
    import torch.nn.functional as F

    from components.gate_data import read_gate_info
    from components.style.io import to_tensor

    net, meta = model
    g, info = p.gate, read_gate_info(gate_dir)
    images = np.load(Path(gate_dir) / "images.npy")
    style = F.interpolate(to_tensor(meta["style_image"].numpy()), size=(g.size, g.size), mode="area")
    score, rows = _scorer(p), []
    with torch.no_grad():
        for rgb in images:
            content = to_tensor(rgb)
            rows.append(score(net(content), content, style))
    figures = {"gate_hash": info["gate_hash"], "images": len(rows), "style": meta.get("style")}
    for metric in ("style_distance", "content_distance"):
        values = np.array([r[metric] for r in rows])
        low, high = bootstrap_interval(np.mean, (values,), g.confidence, seed=g.seed)
        figures.update({metric: round(float(values.mean()), 5), f"{metric}_low": round(low, 5),
                        f"{metric}_high": round(high, 5)})
    return {**figures, "meets_target": meets_target(figures, p)}


def meets_target(figures: dict, p: StyleTransferParams) -> bool:
    return bool(figures["content_distance"] <= p.gate.max_content_distance)


def decide(challenger: dict, champion: dict | None, p: StyleTransferParams) -> GateDecision:
    """No champion: the challenger takes it. Else promote only on a lower style distance beyond the
    noise (the difference's interval wholly below zero; an equal model never wins), never with a
    content distance above the champion's by more than gate.content_tolerance."""
    g, new, old = p.gate, challenger, champion

    def decision(promote: bool, reason: str) -> GateDecision:
        return gate_decision(promote, reason, new, old, lambda f: meets_target(f, p),
                             lambda f: f"gate content distance {f['content_distance']:.4f}",
                             f"content distance <= {g.max_content_distance:g}")

    if old is None:
        return decision(True, f"first version, no champion yet: style distance {new['style_distance']:.4f}")
    if new["gate_hash"] != old["gate_hash"]:
        return decision(False, "kept champion: the two were not measured on the same gate set")
    low, high = difference_interval(new["style_distance"], (new["style_distance_low"], new["style_distance_high"]),
                                    old["style_distance"], (old["style_distance_low"], old["style_distance_high"]))
    figures = (f"style distance {new['style_distance']:.4f} vs {old['style_distance']:.4f} (difference in "
               f"[{low:+.4f}, {high:+.4f}]); content distance {new['content_distance']:.4f} vs "
               f"{old['content_distance']:.4f}")
    if new["content_distance"] > old["content_distance"] + g.content_tolerance:
        return decision(False, f"kept champion (content distance worse beyond tolerance): {figures}")
    if not high < 0:
        return decision(False, f"kept champion (style distance not lower beyond noise): {figures}")
    return decision(True, f"beats champion: {figures}")
