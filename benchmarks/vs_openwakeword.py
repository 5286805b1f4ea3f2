"""Ours against openWakeWord 0.5.1's pretrained hey_jarvis model on the same held-out "hey jarvis" test.

Positives: "hey jarvis" spoken by the held-out Piper voice (never in our training; rate and noise
scales drawn per render), each placed in a 10 s background (quiet, noise, music-like, babble as in
real_speech.py). Negatives: the real-speech negative clips of real_speech.py (real people, never the
phrase). openWakeWord runs through its own ONNX inference framework (the model file ships in its
wheel; nothing downloads), fed 80 ms chunks as it expects; both detectors get a 1 s refractory
period. Prints both DET curves as FRR at 0.5, 1, 2 and 5 FA/h.
    python benchmarks/vs_openwakeword.py --model PATH [--renders 200] [--negative-hours 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout import Clip, Scorer, det_curve, model_scorer, report  # noqa: E402
from real_speech import KINDS, _clip, _load, REAL, build_sets  # noqa: E402

from components.audio import detection as det, tts  # noqa: E402


def openwakeword_scorer() -> Scorer:
    import openwakeword
    from openwakeword.model import Model

    path = Path(openwakeword.__file__).parent / "resources/models/hey_jarvis_v0.1.onnx"
    model = Model(wakeword_models=[str(path)], inference_framework="onnx")

    def probs(wave: np.ndarray) -> np.ndarray:
        model.reset()
        pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
        return np.array([model.predict(pcm[i: i + 1280])["hey_jarvis_v0.1"]
                         for i in range(0, len(pcm) - 1279, 1280)])

    return Scorer("openWakeWord hey_jarvis", probs, 0.08, det.DetectionConfig(threshold=0.5, smoothing_steps=1, refractory_s=1.0))


def positives(renders: int, real: Path, seed: int = 0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    babble = _load(real / "speech_commands")
    voices = tts.sample_voices(tts.PIPER_FAMILY, renders, rng)
    return [c for i, v in enumerate(voices)
            if (c := _clip([tts.render("hey jarvis", v)], KINDS[i % len(KINDS)], rng, babble, True))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="our 'hey jarvis' detector file")
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--negative-hours", type=float, default=1.0)
    parser.add_argument("--real-dir", type=Path, default=REAL, help="the real-speech folder (default: %(default)s)")
    args = parser.parse_args()
    pos = positives(args.renders, args.real_dir)
    _, neg = build_sets(args.negative_hours, args.real_dir)
    ours, threshold = model_scorer(args.model)
    report(ours.name, det_curve(ours, pos, neg), threshold)
    report("openWakeWord hey_jarvis", det_curve(openwakeword_scorer(), pos, neg), 0.5)


if __name__ == "__main__":
    main()
