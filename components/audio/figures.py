"""Pictures of clips: waveform, log spectrogram and label track, aligned in time."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def plot_clip_examples(examples: list[tuple[np.ndarray, dict, np.ndarray]], sample_rate: int, step_s: float,
                       path: Path) -> None:
    """One column per clip: waveform with word spans shaded (green: trigger, grey: negative),
    spectrogram, and the label track, all on the same time axis."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(examples), 7.0), layout="constrained")
    axes = fig.subplots(3, len(examples), squeeze=False, sharex="col", height_ratios=[1, 1.4, 0.6])
    for col, (audio, row, labels) in enumerate(examples):
        t = np.arange(len(audio)) / sample_rate
        wave, spec, lab = axes[0, col], axes[1, col], axes[2, col]
        wave.plot(t, audio, lw=0.3, color="black")
        for start, end in json.loads(row["triggers"]):
            wave.axvspan(start, end, color="tab:green", alpha=0.3)
        for start, end, _ in json.loads(row["negatives"]):
            wave.axvspan(start, end, color="grey", alpha=0.25)
        wave.set_title(f"{row['clip_id']}\n{row['background']}, SNR {row['snr_db']} dB, {row['voice_family']}", fontsize=8)
        spec.specgram(audio, NFFT=400, Fs=sample_rate, noverlap=240, cmap="magma", scale="dB")
        spec.set_ylabel("Hz" if col == 0 else "")
        lab.step(np.arange(len(labels)) * step_s, labels, where="post", color="tab:green")
        lab.set_ylim(-0.1, 1.1)
        lab.set_xlabel("time (s)")
    axes[0, 0].set_ylabel("waveform")
    axes[2, 0].set_ylabel("label")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
