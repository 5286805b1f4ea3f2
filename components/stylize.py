"""`cs230 stylize CONTENT STYLE -o OUT.png`: Gatys pixel optimisation, or one pass of a fast network.

Prints one JSON line at the end: {"output", "content_loss", "style_loss", "steps", "seconds", ...}.
Bad input (an unreadable or missing image, a size over style_transfer.max_size, a missing style or
model) prints one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from components.config import ParamsError, StyleTransferParams, load_params
from components.errors import InputError

FAST_FILE = "style_net.pt"  # the fast network's file, in a stage's outputs and a registered model


def perceptual_loss(p: StyleTransferParams, style: torch.Tensor, features: str | None = None, net=None,
                    style_weight: float | None = None):
    """The params' perceptual loss for one style image [1, 3, H, W] (features: another network's layers)."""
    from components.style.features import load_features
    from components.style.perceptual import PerceptualLoss
    name = features or p.features
    layers = getattr(p.layers, name)
    net = net or load_features(name, p.pooling, p.seed)
    return PerceptualLoss(net, style, layers.content, layers.style, p.loss.content_weight,
                          p.loss.style_weight if style_weight is None else style_weight, p.loss.tv_weight)


def run_gatys(p: StyleTransferParams, content: torch.Tensor, style: torch.Tensor, steps: int | None = None,
              optimizer: str | None = None, init: str | None = None, progress: bool = False, loss=None):
    from components.style.gatys import stylize
    g = p.gatys
    return stylize(content, loss or perceptual_loss(p, style), steps or g.steps, optimizer or g.optimizer,
                   init or g.init, g.lbfgs_lr, g.adam_lr, p.seed, progress)


def load_style_ref(ref: str, tracking_uri: str | None = None):
    """(fast network, meta) from a models:/ URI or a saved file/folder (refs.ModelLoadError)."""
    from components.refs import load_model_ref
    from components.style.io import load_fast
    return load_model_ref(ref, FAST_FILE, load_fast, tracking_uri)


def load_style_model(ref: str):
    """(fast network, meta) of `style-<name>` (its champion), a models:/ URI, or a saved file/folder."""
    import os

    from components.refs import ModelLoadError
    uri = f"models:/{ref}@champion" if ref.startswith("style-") else ref
    try:
        return load_style_ref(uri, os.environ.get("MLFLOW_TRACKING_URI"))
    except ModelLoadError as exc:
        raise InputError(f"model {exc}") from None


def stylize_files(p: StyleTransferParams, content_path: Path, style_path: Path | None, out: Path, size: int,
                  model: str | None = None, **gatys_flags) -> dict:
    from components.style.io import read_image, write_png
    if size > p.max_size:
        raise InputError(f"--size {size} is over style_transfer.max_size ({p.max_size})")
    content = read_image(content_path, size)
    if model:
        net, meta = load_style_model(model)
        started = time.perf_counter()
        with torch.no_grad():
            image = net(content)
        figures = {"model": model, "style": meta.get("style"), "seconds": round(time.perf_counter() - started, 3)}
    else:
        if style_path is None:
            raise InputError("a STYLE image is needed (or --model style-<name>)")
        style = read_image(style_path, size)
        image, figures = run_gatys(p, content, style, progress=True, **gatys_flags)
    write_png(image, out)
    return {"output": str(out), **figures}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cs230 stylize", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("content", type=Path, metavar="CONTENT", help="the content image")
    parser.add_argument("style", type=Path, nargs="?", metavar="STYLE", help="the style image (Gatys)")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.png")
    parser.add_argument("--size", type=int, help="side in pixels (default: style_transfer.image_size)")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: style_transfer.gatys.steps)")
    parser.add_argument("--optimizer", choices=["lbfgs", "adam"])
    parser.add_argument("--init", choices=["content", "noise"])
    parser.add_argument("--model", metavar="NAME_OR_PATH", help="a registered fast network (style-<name>, "
                        "models:/ URI) or a saved one: one forward pass instead of the optimisation")


def run(args: argparse.Namespace, base: Path | None = None) -> int:
    base = base or Path.cwd()  # resolved per call, not when the module is imported
    try:
        p = load_params().style_transfer
        torch.manual_seed(p.seed)
        model = args.model if not args.model or args.model.startswith(("models:/", "style-")) \
            else str(base / args.model)
        record = stylize_files(p, base / args.content, base / args.style if args.style else None, base / args.out,
                               args.size or p.image_size, model, steps=args.steps, optimizer=args.optimizer,
                               init=args.init)
    except (InputError, ParamsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
