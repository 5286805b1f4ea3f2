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


def plot_errors(data_dir: Path, manifest, misses: list, false_accepts: list, step_s: float, cfg, path: Path,
                window_s: float = 10.0) -> None:
    """Misses and false accepts: spectrogram over the probability track with the threshold,
    trigger spans (green) and detections (red). Long clips show `window_s` around the event."""
    import soundfile as sf
    from matplotlib.figure import Figure

    from components.audio.detection import detect, smooth

    cases = [("miss", c) for c in misses] + [("false accept", c) for c in false_accepts]
    fig = Figure(figsize=(4.2 * max(len(cases), 1), 5.0), layout="constrained")
    if not cases:
        fig.text(0.5, 0.5, "no misses and no false accepts", ha="center")
        fig.savefig(path, dpi=90)
        return
    axes = fig.subplots(2, len(cases), squeeze=False, height_ratios=[1.3, 1])
    files = manifest.set_index("clip_id")["file"]
    for col, (kind, clip) in enumerate(cases):
        audio, sr = sf.read(str(data_dir / files[clip.clip_id]), dtype="float32")
        found = detect(clip.probs, step_s, cfg)
        centre = (found[0].time_s if kind == "false accept" and found else
                  clip.triggers[0][1] if clip.triggers else len(audio) / sr / 2)
        t0 = max(0.0, min(centre - window_s / 2, len(audio) / sr - window_s))
        seg = audio[int(t0 * sr):int((t0 + window_s) * sr)]
        spec, prob = axes[0, col], axes[1, col]
        spec.specgram(seg, NFFT=400, Fs=sr, noverlap=240, cmap="magma", scale="dB", xextent=(t0, t0 + len(seg) / sr))
        spec.set_title(f"{kind}: {clip.clip_id} ({clip.background})", fontsize=8)
        t = np.arange(len(clip.probs)) * step_s
        prob.plot(t, clip.probs, lw=0.6, color="grey", label="p")
        prob.plot(t, smooth(clip.probs, cfg.smoothing_steps), color="black", label="smoothed")
        prob.axhline(cfg.threshold, color="tab:blue", ls="--", lw=0.8, label="threshold")
        for s, e in clip.triggers:
            prob.axvspan(s, e, color="tab:green", alpha=0.3)
        for d in found:
            prob.axvline(d.time_s, color="tab:red")
        prob.set(xlim=(t0, t0 + window_s), ylim=(0, 1.02), xlabel="time (s)")
    axes[1, 0].legend(fontsize=7, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
