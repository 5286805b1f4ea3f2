"""Assemble one labelled clip: words placed on a background at a chosen SNR.

Each clip is a pure function of its `ClipSpec` (which carries its own seed), the speech
bank and the params, so clips can be made in any order, by any number of workers, with
the same bytes out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from components.audio import augment, backgrounds
from components.audio.speech_bank import SpeechBank


@dataclass(frozen=True)
class ClipSpec:
    clip_id: str
    subset: str          # "main", "unseen_voice" or "negative_stream"
    group: int           # resource group (speech_bank): the unit the split keeps together
    duration_s: float
    n_triggers: int
    n_negatives: int
    seed: tuple[int, ...]  # entropy of this clip's own random stream


def extended_pulse_labels(trigger_ends_s: list[float], n_steps: int, step_s: float, pulse_steps: int) -> np.ndarray:
    """CS230's label track: 1 for `pulse_steps` steps from the step holding each word end."""
    labels = np.zeros(n_steps, dtype=np.uint8)
    for end in trigger_ends_s:
        first = int(end / step_s)
        labels[first:first + pulse_steps] = 1
    return labels


def place_without_overlap(lengths: list[int], total: int, min_gap: int, rng: np.random.Generator) -> list[int] | None:
    """Uniformly random start offsets for segments in a random order, never overlapping and
    at least `min_gap` apart; None if they cannot fit."""
    free = total - sum(lengths) - min_gap * (len(lengths) - 1)
    if free < 0:
        return None
    order = rng.permutation(len(lengths))
    # split the free space into len+1 random gaps (sorted uniform cut points)
    cuts = np.sort(rng.integers(0, free + 1, size=len(lengths)))
    starts = [0] * len(lengths)
    cursor = 0
    for rank, idx in enumerate(order):
        starts[idx] = int(cursor + cuts[rank])
        cursor += lengths[idx] + min_gap
    return starts


def _background(spec: ClipSpec, n: int, sr: int, bank: SpeechBank, recordings: dict[int, list[tuple[str, np.ndarray]]],
                p, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    own = recordings.get(spec.group, [])
    if own and rng.random() < p.backgrounds.recorded_prob:
        name, audio = own[int(rng.integers(len(own)))]
        return backgrounds.load_recording_segment(audio, n, rng), "recorded", name
    kind = str(rng.choice(p.backgrounds.kinds))
    pool = [bank.audio[i] for k in ("random", "hard") for i in bank.indices(spec.group, k)]
    return backgrounds.synth_background(kind, n, sr, rng, speech_pool=pool), kind, ""


def _pick_negatives(spec: ClipSpec, bank: SpeechBank, p, rng) -> list[int]:
    hard, rand = bank.indices(spec.group, "hard"), bank.indices(spec.group, "random")
    picks = []
    for _ in range(spec.n_negatives):
        pool = hard if (hard and (not rand or rng.random() < p.clips.hard_negative_share)) else rand
        if pool:
            picks.append(pool[int(rng.integers(len(pool)))])
    return picks


def assemble_clip(spec: ClipSpec, bank: SpeechBank, recordings: dict, p) -> tuple[np.ndarray, dict, np.ndarray]:
    """(audio float32, manifest row, labels) for one clip. `p` is TriggerWordParams."""
    rng = np.random.default_rng(list(spec.seed))
    sr = p.audio.sample_rate
    n = int(round(spec.duration_s * sr))

    triggers = bank.indices(spec.group, "trigger")
    chosen = [("trigger", triggers[int(rng.integers(len(triggers)))]) for _ in range(spec.n_triggers) if triggers]
    chosen += [("negative", i) for i in _pick_negatives(spec, bank, p, rng)]
    words = [augment.augment_word(bank.audio[i], rng, sr, p.augment) for _, i in chosen]
    starts = place_without_overlap([len(w) for w in words], n, int(p.clips.min_gap_s * sr), rng)
    while starts is None:  # too many words for the clip: drop negatives first, then triggers
        drop = max(i for i, (role, _) in enumerate(chosen) if role == "negative") \
            if any(r == "negative" for r, _ in chosen) else len(chosen) - 1
        del chosen[drop], words[drop]
        starts = place_without_overlap([len(w) for w in words], n, int(p.clips.min_gap_s * sr), rng)

    speech = np.zeros(n, dtype=np.float32)
    events = {"trigger": [], "negative": []}
    for (role, i), w, s in zip(chosen, words, starts):
        speech[s:s + len(w)] += w
        job = bank.jobs[i]
        events[role].append((round(s / sr, 4), round((s + len(w)) / sr, 4), job.text, job.voice.family))
    if len(chosen) and rng.random() < p.augment.reverb_prob:
        rt60 = rng.uniform(*p.augment.rt60_range)
        speech = augment.reverberate(speech, augment.synth_room_impulse_response(rng, sr, rt60))

    bg, bg_kind, bg_file = _background(spec, n, sr, bank, recordings, p, rng)
    snr = float(rng.uniform(*p.clips.snr_db)) if chosen else float("nan")
    audio = backgrounds.mix_at_snr(bg, speech, snr) if chosen else bg
    # a random playback level, then headroom so nothing clips
    audio = audio * (10 ** rng.uniform(-2.0, -1.0) / max(float(np.sqrt(np.mean(audio ** 2))), 1e-9))
    peak = float(np.max(np.abs(audio)))
    if peak > 0.95:
        audio *= 0.95 / peak

    trig = sorted(events["trigger"])
    neg = sorted(events["negative"])
    families = [e[3] for e in trig] or [e[3] for e in neg]
    row = {
        "clip_id": spec.clip_id, "subset": spec.subset, "group": spec.group,
        "voice_family": families[0] if families else "none", "background": bg_kind, "background_file": bg_file,
        "snr_db": round(snr, 2), "duration_s": spec.duration_s, "n_triggers": len(trig), "n_negatives": len(neg),
        "triggers": json.dumps([[s, e] for s, e, _, _ in trig]),
        "trigger_families": json.dumps([f for *_, f in trig]),
        "negatives": json.dumps([[s, e, text] for s, e, text, _ in neg]),
    }
    step_s = p.labels.step_ms / 1000
    labels = extended_pulse_labels([e for _, e, _, _ in trig], int(n // (sr * step_s)), step_s, p.labels.pulse_steps)
    return audio.astype(np.float32), row, labels
