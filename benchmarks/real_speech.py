"""Real human speech: FRR on real "computer" recordings and FA/h on real speech without it.

Positives: each real "computer" clip (../shared/data/real-speech/computer/, 57 clips, two
speakers) placed once in each of four 10 s backgrounds: quiet (white noise 30-40 dB below the
speech), noise (white/pink/brown, 0-15 dB), music-like (tonal, 0-15 dB) and babble (real Speech
Commands words overlapped, 0-15 dB). Negatives: 10 s clips holding 3-6 real utterances that never
say "computer" (Speech Commands words and the not-wake-word phrases) over the same backgrounds,
--negative-hours of them (utterances are reused, each time with another background and gain).
The recordings are only ever evaluated on, never trained or tuned on.

Models: --model PATH ... (detector files of this project, either front end); without it the
default pipeline is trained for the word by `cs230 run trigger-word --set trigger_word.word=computer`
and its models/trigger_word/detector.pt is scored. Prints FRR at 0.5, 1, 2 and 5 FA/h per model.
    python benchmarks/real_speech.py [--model models/trigger_word/detector.pt ...] [--negative-hours 1] [--real-dir DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout import ROOT, Clip, det_curve, model_scorer, report  # noqa: E402

from components.audio import audio_io, backgrounds  # noqa: E402
from components.audio.clips import place_without_overlap  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real-speech"  # ../shared/ beside the project (DESIGN §4); --real-dir
SR, CLIP_S = 16000, 10.0
KINDS = ("quiet", "noise", "music", "babble")


def _load(folder: Path) -> list[np.ndarray]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    if not files:
        raise SystemExit(f"error: {folder}: no recordings (pass --real-dir, the folder real-speech/)")
    return [audio_io.read_audio(p) for p in files]


def _background(kind: str, n: int, rng: np.random.Generator, babble_pool: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """(background RMS 1, SNR in dB) for one clip of this kind."""
    if kind == "quiet":
        return backgrounds.synth_background("white", n, SR, rng), float(rng.uniform(30, 40))
    synth = {"noise": str(rng.choice(["white", "pink", "brown"])), "music": "tonal", "babble": "babble"}[kind]
    return backgrounds.synth_background(synth, n, SR, rng, babble_pool), float(rng.uniform(0, 15))


def _clip(words: list[np.ndarray], kind: str, rng, babble_pool, positive: bool) -> Clip | None:
    n = int(CLIP_S * SR)
    starts = place_without_overlap([len(w) for w in words], n, int(0.2 * SR), rng)
    if starts is None:
        return None
    speech = np.zeros(n, np.float32)
    for w, s in zip(words, starts):
        speech[s: s + len(w)] += w * np.float32(10 ** (rng.uniform(-6, 6) / 20))
    bg, snr = _background(kind, n, rng, babble_pool)
    wave = backgrounds.mix_at_snr(bg, speech, snr)
    wave = wave / max(1.0, float(np.abs(wave).max()) / 0.99)
    triggers = [(s / SR, (s + len(w)) / SR) for w, s in zip(words, starts)] if positive else []
    return Clip(wave.astype(np.float32), triggers, kind)


def build_sets(negative_hours: float, real: Path = REAL, seed: int = 0) -> tuple[list[Clip], list[Clip]]:
    rng = np.random.default_rng(seed)
    trigger = _load(real / "computer")
    others = _load(real / "speech_commands") + _load(real / "not-wake-words")
    positives = [c for w in trigger for kind in KINDS if (c := _clip([w], kind, rng, others, True))]
    negatives: list[Clip] = []
    while len(negatives) * CLIP_S < negative_hours * 3600:
        words = [others[i] for i in rng.choice(len(others), size=int(rng.integers(3, 7)), replace=False)]
        clip = _clip(words, KINDS[len(negatives) % len(KINDS)], rng, others, False)
        if clip is not None:
            negatives.append(clip)
    return positives, negatives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="*", help="detector files; default: train the pipeline")
    parser.add_argument("--negative-hours", type=float, default=1.0)
    parser.add_argument("--real-dir", type=Path, default=REAL, help="the real-speech folder (default: %(default)s)")
    args = parser.parse_args()
    models = args.model
    if not models:
        subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "trigger-word",
                        "--set", "trigger_word.word=computer", "--no-push"], cwd=ROOT, check=True)
        models = [ROOT / "models/trigger_word/detector.pt"]
    positives, negatives = build_sets(args.negative_hours, args.real_dir)
    print(f"real speech: {len(positives)} 'computer' triggers ({len(positives) // len(KINDS)} recordings x "
          f"{len(KINDS)} backgrounds), {len(negatives) * CLIP_S / 3600:.2f} h of real speech without it")
    for path in models:
        scorer, threshold = model_scorer(path)
        report(scorer.name, det_curve(scorer, positives, negatives), threshold)


if __name__ == "__main__":
    main()
