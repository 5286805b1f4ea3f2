"""Style transfer, model side: the fast network's search space, trials and final training.

Each run trains one style's transformation network (Johnson et al. 2016) against the perceptual
loss of style_transfer.features, with the fast network's own weights (train.style_weight,
style_scale, tv_weight). val_loss is the perceptual loss at the fixed `loss` weights on val content
(so trials with different weights compare); score = 1 / (1 + val_loss), in (0, 1].
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.config import StyleTransferParams
from components.precision import resolve
from components.tasks.style_transfer.data import load_dataset, split_images, style_name

SCORE = "val_score"
MODEL_KEYS = ("width",)
TRAIN_KEYS = ("style_weight", "style_scale", "tv_weight", "lr")


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 1
    stop_reason: str = "max_epochs"
    seconds: float = 0.0
    threads: int = 1


def trial_code() -> tuple[Path, ...]:
    from components import precision
    from components.style import fast, features, losses, perceptual
    from components.tasks.style_transfer import data
    return (*(Path(m.__file__) for m in (fast, features, losses, perceptual, data, precision)), Path(__file__))


def search_space(space) -> dict:
    from ray import tune
    return {"style_weight": tune.loguniform(*space.style_weight), "style_scale": tune.loguniform(*space.style_scale),
            "tv_weight": tune.uniform(*space.tv_weight), "lr": tune.loguniform(*space.lr),
            "width": tune.choice(space.width)}


def study_prefix(p: StyleTransferParams) -> str:
    return "style-transfer"


def trial_identity(p: StyleTransferParams) -> dict:
    return {"features": p.features, "pooling": p.pooling, "layers": getattr(p.layers, p.features).model_dump(),
            "loss": p.loss.model_dump(), "model": p.model.model_dump(exclude=set(MODEL_KEYS)),
            "train": p.train.model_dump(include={"crop_size", "batch_size"})}


def losses(p: StyleTransferParams, style, train: dict):
    """(the fast network's training loss, the fixed-weight val loss) for a style tensor [1, 3, S, S]."""
    import torch

    from components.style.features import load_features
    from components.style.perceptual import PerceptualLoss

    layers = getattr(p.layers, p.features)
    net = load_features(p.features, p.pooling, p.seed).to(memory_format=torch.channels_last)  # as train_fast's
    scaled = {name: w * train["style_scale"] ** i for i, (name, w) in enumerate(layers.style.items())}
    return (PerceptualLoss(net, style, layers.content, scaled, 1.0, train["style_weight"], train["tv_weight"]),
            PerceptualLoss(net, style, layers.content, layers.style, p.loss.content_weight, p.loss.style_weight,
                           p.loss.tv_weight))


def _tensors(images):
    import torch
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()


def _centre(x, side: int):
    """The centre side-x-side window (a view) of images [N, 3, H, W] (whole images when they are smaller)."""
    top, left = max(0, (x.shape[-2] - side) // 2), max(0, (x.shape[-1] - side) // 2)
    return x[..., top:top + side, left:left + side]


def train_net(p: StyleTransferParams, model: dict, train: dict, data_dir: Path, train_ids: list[str],
              val_ids: list[str], epochs: int, threads: int, on_epoch, progress: bool = False):
    """(the network at its best val epoch, FitResult)."""
    import torch

    from components.style.fast import TransformNet, train_fast

    torch.set_num_threads(threads)
    torch.manual_seed(p.seed)
    crop = p.train.crop_size
    _, _, style = load_dataset(Path(data_dir))  # images and style at image_size: strokes keep their scale
    train_loss, val_loss = losses(p, _tensors(style[None]), train)
    train_x = _tensors(split_images(data_dir, train_ids))
    val_x = _centre(_tensors(split_images(data_dir, val_ids)), crop).contiguous(memory_format=torch.channels_last)
    val_target = val_loss.content_target(val_x)
    net = TransformNet(model["width"], model["residual_blocks"])
    result, best = FitResult(threads=threads), {"val_loss": float("inf")}
    started = last = time.perf_counter()

    def epoch_end(epoch: int, terms: dict) -> None:
        nonlocal last, best
        net.eval()
        with torch.no_grad():
            total, _ = val_loss(net(val_x), val_target)
        net.train()
        figures = {"epoch": epoch, "train_loss": terms["loss"], "val_loss": total.item(),
                   SCORE: 1.0 / (1.0 + total.item()), "lr": train["lr"], "epoch_s": time.perf_counter() - last,
                   "content_loss": terms["content_loss"], "style_loss": terms["style_loss"]}
        last = time.perf_counter()
        result.history.append(figures)
        if figures["val_loss"] < best["val_loss"]:
            best = {"val_loss": figures["val_loss"], "state": copy.deepcopy(net.state_dict())}
            result.best_epoch = epoch
        on_epoch(epoch, figures)

    train_fast(net, train_x, train_loss, epochs, p.train.batch_size, train["lr"], p.seed, crop, epoch_end, progress,
               resolve(p.train.precision) == "bf16")
    net.load_state_dict(best["state"])
    result.seconds = time.perf_counter() - started
    return net.eval(), result


def fit_trial(p: StyleTransferParams, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
              on_epoch) -> None:
    train_net(p, {**p.model.model_dump(), **chosen["model"]}, {**p.train.model_dump(), **chosen["train"]},
              Path(data_dir), train_ids, val_ids, p.tune.max_epochs, 1, on_epoch)


def fit(p: StyleTransferParams, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    from components.split import read_split

    model, train = {**p.model.model_dump(), **tuned.get("model", {})}, {**p.train.model_dump(), **tuned.get("train", {})}
    threads = p.train.threads or len(os.sched_getaffinity(0))
    train_ids, val_ids = read_split(split_dir, "train"), read_split(split_dir, "val")
    mode = resolve(p.train.precision)
    print(f"training a width-{model['width']} fast network for style {style_name(p)} on {len(train_ids)} images at "
          f"{p.train.crop_size} px crops (style weight {train['style_weight']:.3g}, lr {train['lr']:.2g}), "
          f"{p.train.epochs} epochs, {threads} threads, {mode}", flush=True)
    net, result = train_net(p, model, train, data_dir, train_ids, val_ids, p.train.epochs, threads, on_epoch,
                            progress=True)
    net.meta = {"style": style_name(p), "features": p.features, "train": train, "precision": mode}
    return net, result


def save_model(net, path: Path) -> None:
    from components.style.io import save_fast
    save_fast(net, path, getattr(net, "meta", {}))


def train_summary(net, best: dict) -> dict:
    parameters = sum(t.numel() for t in net.parameters())
    return {"val_loss": round(best["val_loss"], 5), SCORE: round(best[SCORE], 5), "parameters": parameters,
            "size_kb": round(parameters * 4 / 1024, 1), "precision": net.meta["precision"]}
