"""Trigger word, stage features: the frozen speech embedding of every generated file, computed once.

With features.frontend: speech_embedding, tune and train read these cached embeddings
(components/audio/embedding_cache.py) instead of decoding audio; DVC re-runs the stage only
when the generated data (or this code) changes. With logmel there is nothing to compute: the
folder holds only a note, so the log-mel pipeline pays nothing for the stage.
    python -m components.features trigger-word [--data DIR] [--out DIR]
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from components.config import TriggerWordParams
from components.stage_cli import staged_output


def run(p: TriggerWordParams, data_dir: Path, out_dir: Path) -> dict:
    with staged_output(out_dir) as tmp:
        if p.features.frontend != "speech_embedding":
            result = {"frontend": p.features.frontend, "files": 0}
            (tmp / "skipped.json").write_text(json.dumps(result) + "\n")
        else:
            from components.audio.embedding_cache import compute
            workers = p.generate.workers or len(os.sched_getaffinity(0))
            result = {"frontend": p.features.frontend, **compute(data_dir, tmp, workers)}
    return result
