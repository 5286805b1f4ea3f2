"""`cs230 face ...`: the face encoder on image files, JSON lines on stdout (DESIGN §5).

    cs230 face embed IMG|DIR ... [--cropped]
    cs230 face verify A B [--cropped]   /   cs230 face verify --pairs pairs.csv
    cs230 face enroll GALLERY_DIR --index OUT [--force]      GALLERY_DIR/<person>/*.jpg
    cs230 face identify --index OUT IMG|DIR ...
    cs230 face cluster DIR ...

The model is `models:/face-encoder@champion` of the configured MLflow unless --model names
another (URI, saved encoder file, or a folder holding one). The work is components/face_commands.py.
Exit status: 0 every file was used; 1 some were not (each has its {"file", "error"} line);
2 nothing could start (no model, a bad flag, an index of another encoder, an index in the way).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _encoder(args: argparse.Namespace):
    """The encoder, or None after printing why not."""
    from components.face_commands import CHAMPION_URI, load_encoder_ref
    from components.refs import ModelLoadError, is_model_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ref = args.model or CHAMPION_URI
    try:
        return load_encoder_ref(ref if is_model_uri(ref) else str(args.invocation_dir / ref),
                                tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    except ModelLoadError as exc:
        hint = "; no champion registered yet: run `cs230 run face` first, or pass --model" \
            if exc.not_found and not args.model else ""
        _fail(f"model {exc}{hint}")
        return None


def _print_all(records) -> int:
    """Print each record as a JSON line; 1 if any is an error, else 0."""
    failed = 0
    try:
        for record in records:
            failed += "error" in record
            print(json.dumps(record), flush=True)
    except BrokenPipeError:  # `cs230 face ... | head -1`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failed else 0


def _threshold(args: argparse.Namespace) -> str | None:
    if args.threshold is not None and not 0.0 < args.threshold <= 2.0:
        return f"--threshold {args.threshold:g}: a distance between unit vectors, in (0, 2]"
    return None


def cmd_embed(args: argparse.Namespace) -> int:
    from components.face_commands import embed_inputs, iter_inputs

    encoder = _encoder(args)
    if encoder is None:
        return 2
    return _print_all(embed_inputs(encoder, iter_inputs(args.paths, args.invocation_dir), args.cropped))


def cmd_verify(args: argparse.Namespace) -> int:
    from components.errors import InputError
    from components.face_commands import read_pairs, verify_pairs

    if bool(args.pairs) == bool(args.images) or (args.images and len(args.images) != 2):
        return _fail("give two images (cs230 face verify A B) or --pairs CSV, not both")
    if _threshold(args):
        return _fail(_threshold(args))
    csv_path = args.invocation_dir / args.pairs if args.pairs else None
    try:
        pairs = read_pairs(csv_path) if csv_path else [tuple(args.images)]
    except InputError as exc:
        return _fail(str(exc))
    encoder = _encoder(args)
    if encoder is None:
        return 2
    base = csv_path.parent if csv_path else args.invocation_dir  # a CSV's paths are relative to it
    return _print_all(verify_pairs(encoder, pairs, base, args.cropped, args.threshold))


def cmd_enroll(args: argparse.Namespace) -> int:
    from components.face.search import Gallery, GalleryError, check_target
    from components.face_commands import enroll_inputs

    out = args.invocation_dir / args.index
    try:
        check_target(out, args.force)  # before minutes of embedding, not after
    except GalleryError as exc:
        return _fail(str(exc))
    encoder = _encoder(args)
    if encoder is None:
        return 2
    gallery = Gallery(encoder.identity)
    status = _print_all(enroll_inputs(encoder, gallery, args.gallery, args.invocation_dir, args.cropped))
    if not len(gallery):
        return _fail(f"{args.gallery}: no face enrolled; nothing written to {args.index}")
    gallery.save(out, force=args.force)
    print(f"enrolled {len(gallery)} images of {len(gallery.identities)} people into {args.index}", file=sys.stderr)
    return status


def cmd_identify(args: argparse.Namespace) -> int:
    from components.face.search import Gallery, GalleryError
    from components.face_commands import identify_inputs, iter_inputs

    if _threshold(args):
        return _fail(_threshold(args))
    encoder = _encoder(args)
    if encoder is None:
        return 2
    try:
        gallery = Gallery.load(args.invocation_dir / args.index, encoder=encoder.identity)
    except GalleryError as exc:
        return _fail(str(exc))
    return _print_all(identify_inputs(encoder, gallery, iter_inputs(args.paths, args.invocation_dir),
                                      args.cropped, args.threshold))


def cmd_cluster(args: argparse.Namespace) -> int:
    from components.face_commands import cluster_inputs, iter_inputs

    if _threshold(args):
        return _fail(_threshold(args))
    encoder = _encoder(args)
    if encoder is None:
        return 2
    return _print_all(cluster_inputs(encoder, iter_inputs(args.paths, args.invocation_dir), args.cropped,
                                     args.threshold))


def add_parser(sub) -> None:
    face = sub.add_parser("face", help="face embed / verify / enroll / identify / cluster (JSON lines)")
    commands = face.add_subparsers(dest="face_command", required=True)

    def command(name: str, handler, help: str, threshold: bool = True) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        p.add_argument("--model", metavar="PATH_OR_URI", help="MLflow model URI or saved encoder file/folder "
                       "(default: models:/face-encoder@champion)")
        p.add_argument("--cropped", action="store_true", help="each image is a face already: no detection")
        if threshold:
            p.add_argument("--threshold", type=float, metavar="DISTANCE",
                           help="same person at or below this distance (default: the model's own)")
        # main() changes to the project root before the handler: remember where relative paths start
        p.set_defaults(handler=handler, invocation_dir=Path.cwd())
        return p

    command("embed", cmd_embed, "the 128-d embedding of every face in each image",
            threshold=False).add_argument("paths", nargs="+", metavar="IMG", help="image file or folder (recursive)")
    verify = command("verify", cmd_verify, "same person? for two images, or each pair of a CSV")
    verify.add_argument("images", nargs="*", metavar="IMG", help="the two images A B")
    verify.add_argument("--pairs", type=Path, metavar="CSV", help="a CSV with columns a,b (paths relative to it)")
    enroll = command("enroll", cmd_enroll, "build a gallery index from GALLERY_DIR/<person>/*.jpg", threshold=False)
    enroll.add_argument("gallery", metavar="GALLERY_DIR")
    enroll.add_argument("--index", type=Path, required=True, metavar="OUT", help="the gallery folder to write")
    enroll.add_argument("--force", action="store_true", help="replace an existing gallery at OUT")
    identify = command("identify", cmd_identify, "who is it? the nearest enrolled person, or unknown")
    identify.add_argument("--index", type=Path, required=True, metavar="DIR", help="a gallery from cs230 face enroll")
    identify.add_argument("paths", nargs="+", metavar="IMG", help="image file or folder (recursive)")
    command("cluster", cmd_cluster, "group the images by person, the number of people found from the data"
            ).add_argument("paths", nargs="+", metavar="IMG", help="image file or folder (recursive)")
