"""What a rendered identity is, and what varies between its images (DigiFace-1M's recipe in
miniature: identity = geometry + skin/eye/hair texture; everything else is a nuisance drawn
per image, accessories included, so an encoder must learn the geometry to tell people apart).

Both are drawn from numpy generators keyed by (seed, identity) and (seed, identity, image),
so identity 42 of a seed looks the same whatever the dataset size, and image j of it too.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SKIN_TONES = ("I", "II", "III", "IV", "V", "VI")  # Fitzpatrick-like buckets, light to dark
SKIN_RGB = np.array([[241, 208, 188], [226, 182, 150], [198, 146, 108], [164, 113, 78], [122, 82, 56], [82, 54, 38]])
HAIR_RGB = np.array([[26, 22, 20], [62, 42, 30], [108, 74, 46], [196, 160, 102], [148, 72, 36], [60, 58, 56]])
HAIR_WEIGHTS = np.array([0.3, 0.25, 0.18, 0.12, 0.07, 0.08])
EYE_RGB = np.array([[58, 36, 24], [98, 64, 36], [118, 98, 54], [78, 108, 70], [70, 110, 160], [112, 120, 130]])
HAIR_STYLES = ("buzz", "short", "side_part", "fringe", "long", "pulled_back")
AGE_BUCKETS = ((0, 30, "18-29"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 200, "60+"))

# identity traits drawn uniformly between these bounds (template units: the chip's unit square)
TRAITS = {
    "face_rx": (0.52, 0.68), "face_ry_top": (0.82, 0.95), "face_ry_chin": (0.62, 0.80), "face_cy": (0.44, 0.50),
    "jaw_power": (1.8, 3.6), "eye_dx": (0.225, 0.30), "eye_y": (0.19, 0.235), "eye_rx": (0.085, 0.125),
    "eye_ry": (0.022, 0.045), "eye_tilt": (-0.14, 0.14), "brow_gap": (0.13, 0.21), "brow_len": (0.15, 0.22),
    "brow_thick": (0.025, 0.065), "brow_arch": (0.0, 0.07), "brow_tilt": (-0.15, 0.15), "nose_y": (0.58, 0.68),
    "nose_w": (0.08, 0.16), "nose_h": (0.10, 0.24), "mouth_y": (0.76, 0.86), "mouth_w": (0.17, 0.28),
    "lip_up": (0.02, 0.06), "lip_low": (0.04, 0.10), "ear_size": (0.08, 0.14), "hairline": (-0.34, -0.12),
    "hair_volume": (0.02, 0.12), "age": (18.0, 75.0), "redness": (-0.08, 0.08), "lip_tint": (0.2, 0.55)}
N_MOLES = 3


def _rows(seed: int, keys: list[tuple[int, ...]], width: int) -> np.ndarray:
    return np.stack([np.random.default_rng([seed, *k]).random(width) for k in keys]) if keys \
        else np.zeros((0, width))


def sample_identities(seed: int, identities: np.ndarray, glasses_wearers: float, beard_share: float) -> dict:
    """Traits of each identity index (arrays [n] or [n, k]), a pure function of (seed, index)."""
    names = list(TRAITS)
    u = _rows(seed, [(int(i), 0) for i in identities], len(names) + 12 + 3 * N_MOLES)
    traits = {name: lo + (hi - lo) * u[:, k] for k, (name, (lo, hi)) in enumerate(TRAITS.items())}
    rest = u[:, len(names):]
    tone = np.minimum((rest[:, 0] * len(SKIN_TONES)).astype(int), len(SKIN_TONES) - 1)  # balanced buckets
    hair = np.searchsorted(np.cumsum(HAIR_WEIGHTS), rest[:, 1] * HAIR_WEIGHTS.sum()).clip(0, len(HAIR_RGB) - 1)
    eye = np.where(tone >= 3, (rest[:, 2] * 2).astype(int), (rest[:, 2] * len(EYE_RGB)).astype(int))
    traits.update(
        skin_tone=tone, skin_rgb=SKIN_RGB[tone] + (rest[:, 3:6] - 0.5) * 18, hair_rgb=HAIR_RGB[hair] + (rest[:, 6:9] - 0.5) * 16,
        eye_rgb=EYE_RGB[eye.clip(0, len(EYE_RGB) - 1)], hair_style=(rest[:, 9] * len(HAIR_STYLES)).astype(int),
        glasses_wearer=rest[:, 10] < glasses_wearers, bearded=rest[:, 11] < beard_share,
        moles=rest[:, 12:].reshape(-1, N_MOLES, 3))  # per mole: x, y on the face, and size (0 = none)
    return traits


def age_bucket(age: np.ndarray) -> np.ndarray:
    return np.select([(age >= lo) & (age < hi) for lo, hi, _ in AGE_BUCKETS], [b for *_, b in AGE_BUCKETS], "60+")


def sample_nuisances(seed: int, identity: np.ndarray, image: np.ndarray, traits: dict, r) -> dict:
    """Per-image nuisances for images (identity[k], image[k]), whose traits (one row per image)
    are `traits`; r: the face.render params (pose spreads, accessory and degradation rates)."""
    u = _rows(seed, [(int(i), int(j), 1) for i, j in zip(identity, image)], 53)
    g = np.sqrt(2) * _erfinv(2 * u[:, 40:] - 1)  # standard normals from the same stream
    wearer, bearded = traits["glasses_wearer"], traits["bearded"]
    style = np.where(u[:, 12] < r.hairstyle_change, (u[:, 13] * len(HAIR_STYLES)).astype(int), traits["hair_style"])
    n = {
        "yaw": np.clip(g[:, 0] * r.yaw_std_deg, -r.max_yaw_deg, r.max_yaw_deg),
        "pitch": np.clip(g[:, 1] * r.pitch_std_deg, -2 * r.pitch_std_deg, 2 * r.pitch_std_deg),
        "roll": np.clip(g[:, 2] * r.roll_std_deg, -2 * r.roll_std_deg, 2 * r.roll_std_deg),
        "jitter": g[:, 3:13].reshape(-1, 5, 2), "light_az": u[:, 6] * 2 * np.pi, "light_el": 0.15 + 0.75 * u[:, 7],
        "light_strength": 0.25 + 0.75 * u[:, 8], "ambient": 0.35 + 0.35 * u[:, 9],
        "smile": np.where(u[:, 10] < 0.5, 0.0, u[:, 11]) * r.expression, "mouth_open": np.where(u[:, 14] < 0.8, 0.0, u[:, 15]) * r.expression,
        "squint": np.where(u[:, 16] < 0.85, 0.0, u[:, 17]) * r.expression, "brow_raise": np.where(u[:, 18] < 0.8, 0.0, u[:, 19]) * r.expression,
        "glasses": np.where(wearer, u[:, 20] > r.glasses_switch, u[:, 20] < r.glasses_switch * 0.25),
        "glasses_style": u[:, 21], "sunglasses": u[:, 22] < 0.15,
        "beard": np.where(bearded, u[:, 23] > r.beard_switch, u[:, 23] < r.beard_switch * 0.25), "beard_density": 0.5 + 0.5 * u[:, 24],
        "hair_style": style, "age": traits["age"] + (2 * u[:, 25] - 1) * r.age_spread_years,
        "occlusion": np.where(u[:, 26] < r.occlusion, 1 + (u[:, 27] * 3).astype(int), 0), "occ_pos": u[:, 28:31],
        "blur": r.blur_px[0] + (r.blur_px[1] - r.blur_px[0]) * u[:, 31] ** 2,
        "noise": r.noise_std[0] + (r.noise_std[1] - r.noise_std[0]) * u[:, 32],
        "jpeg": np.where(u[:, 33] < r.jpeg_share, r.jpeg_quality[0] + (r.jpeg_quality[1] - r.jpeg_quality[0]) * u[:, 34], 0),
        "grey": u[:, 35] < r.grey_share, "background": u[:, 36:39], "exposure": 0.8 + 0.4 * u[:, 39],
        "noise_seed": (u[:, 0] * 2**32).astype(np.uint64)}
    return n


def _erfinv(x: np.ndarray) -> np.ndarray:
    from scipy.special import erfinv

    return erfinv(np.clip(x, -0.999999, 0.999999))


def attributes(identity: np.ndarray, traits: dict, n: dict) -> pd.DataFrame:
    """The manifest's per-image attribute columns (the slices evaluation reports)."""
    return pd.DataFrame({
        "identity": [f"r{i:05d}" for i in identity], "skin_tone": np.array(SKIN_TONES)[traits["skin_tone"]],
        "age": age_bucket(n["age"]), "glasses": n["glasses"].astype(int), "beard": n["beard"].astype(int),
        "yaw": n["yaw"].round(1), "pitch": n["pitch"].round(1), "roll": n["roll"].round(1),
        "hair_style": np.array(HAIR_STYLES)[n["hair_style"]], "occlusion": n["occlusion"],
        "expression": np.round(n["smile"] + n["mouth_open"] + n["squint"] + n["brow_raise"], 2)})
