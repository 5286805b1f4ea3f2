"""`cs230 export --style style-<name>|FILE [--out DIR]`: the fast style network as DIR/style_net.onnx.

Prints one JSON line: {"model", "style", "file", "size_kb", "max_abs_diff"}; a missing or bad model is
one line on stderr and exit 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from components import paths
from components.errors import InputError

DEFAULT_OUT = paths.MODELS_DIR / "style_transfer" / "export"


def run(ref: str, out_dir: Path) -> int:
    from components.style.onnx_export import export_onnx
    from components.stylize import load_style_model
    try:
        net, meta = load_style_model(ref)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = export_onnx(net, Path(out_dir) / "style_net.onnx")
    print(json.dumps({"model": ref, "style": meta.get("style"), **report}), flush=True)
    return 0
