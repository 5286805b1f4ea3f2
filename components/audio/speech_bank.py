"""The bank of word renders a dataset is assembled from.

Every render is one (text, voice) pair spoken by TTS, tagged with its voice family and a
resource *group*. Groups are what keep the split honest: a clip only uses renders of its
own group, and the split stage keeps whole groups together, so a render never reaches two
splits. Three kinds of group:

- main groups 0..G-1: the trigger and negative renders of the training families;
- stream groups G..G+S-1: negative renders reserved for the negative-only stream;
- the unseen group G+S: every render of the held-out family, used only by test_unseen_voice.

Renders are pure functions of (text, voice), cached on disk by content, so that changing
the number of clips never re-runs TTS.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from components.audio import tts
from components.audio.words import negative_vocabulary

RENDER_CACHE_VERSION = "2"  # bump when tts.render changes its output


@dataclass(frozen=True)
class RenderJob:
    text: str
    voice: tts.Voice
    group: int
    kind: str  # "trigger", "hard" (phrase parts, confusables) or "random" (everyday words)

    @property
    def cache_key(self) -> str:
        raw = f"{RENDER_CACHE_VERSION}|{self.text}|{self.voice.id}"
        return hashlib.sha1(raw.encode()).hexdigest()


@dataclass(frozen=True)
class GroupLayout:
    main: int
    stream: int

    @property
    def unseen(self) -> int:
        return self.main + self.stream

    def kind(self, group: int) -> str:
        return "main" if group < self.main else "stream" if group < self.unseen else "unseen"


def plan_renders(word: str, speech, n_main_groups: int, n_stream_groups: int,
                 rng: np.random.Generator) -> tuple[list[RenderJob], GroupLayout]:
    """What to render and which group each render belongs to (deterministic given rng)."""
    layout = GroupLayout(n_main_groups, n_stream_groups)
    train_families = [f for f in speech.families if f != speech.held_out_family]
    phrase = " ".join(word.split())
    jobs: list[RenderJob] = []

    # trigger renders: spread evenly over all families, a fresh voice each
    per_family = np.diff(np.linspace(0, speech.trigger_renders, len(speech.families) + 1).round().astype(int))
    for family, n in zip(speech.families, per_family):
        for voice in tts.sample_voices(family, int(n), rng):
            group = layout.unseen if family == speech.held_out_family else int(rng.integers(layout.main))
            jobs.append(RenderJob(phrase, voice, group, "trigger"))

    # negatives: each word by several training-family voices (main or stream groups),
    # plus one held-out-family render for the unseen-voice clips
    hard, random_words = negative_vocabulary(word, speech.confusables, speech.extra_negative_words,
                                             speech.auto_confusables, speech.random_negative_words, rng)
    for kind, words in (("hard", hard), ("random", random_words)):
        for text in words:
            for family in rng.choice(train_families, size=speech.renders_per_negative_word):
                voice = tts.sample_voices(str(family), 1, rng)[0]
                jobs.append(RenderJob(text, voice, int(rng.integers(layout.unseen)), kind))
            voice = tts.sample_voices(speech.held_out_family, 1, rng)[0]
            jobs.append(RenderJob(text, voice, layout.unseen, kind))
    return jobs, layout


def _render_one(job: RenderJob) -> np.ndarray:
    return tts.render(job.text, job.voice)


def render_all(jobs: list[RenderJob], cache_dir: Path, workers: int) -> list[np.ndarray]:
    """Audio for every job, from the on-disk cache where present, rendering the rest."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_dir / f"{job.cache_key}.npy" for job in jobs]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        ctx = mp.get_context("spawn")  # fresh interpreters: no inherited BLAS or ONNX thread pools
        with ctx.Pool(max(1, workers)) as pool:
            results = pool.imap(_render_one, [jobs[i] for i in todo], chunksize=8)
            for i, audio in tqdm(zip(todo, results), total=len(todo), desc="tts", unit="render"):
                tmp = paths[i].with_suffix(".tmp.npy")
                np.save(tmp, audio)
                tmp.replace(paths[i])  # atomic: an interrupted run never leaves a torn file
    return [np.load(p) for p in paths]


class SpeechBank:
    """Renders indexed by (group, kind), ready for clip assembly."""

    def __init__(self, jobs: list[RenderJob], audio: list[np.ndarray], layout: GroupLayout):
        self.jobs, self.audio, self.layout = jobs, audio, layout
        self._index: dict[tuple[int, str], list[int]] = {}
        for i, job in enumerate(jobs):
            self._index.setdefault((job.group, job.kind), []).append(i)

    def indices(self, group: int, kind: str) -> list[int]:
        return self._index.get((group, kind), [])

    def groups_with_triggers(self, group_kind: str) -> list[int]:
        return sorted(g for (g, kind) in self._index if kind == "trigger" and self.layout.kind(g) == group_kind)
