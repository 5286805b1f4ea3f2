"""The camera of the scene renderer: from exposed linear radiance to a stored uint8 photograph.

A style is a family of cameras (a sensor, a response curve, a processing chain and a lens),
each image drawing its own camera from its style's ranges:
- phone: sRGB-like gamma with a filmic shoulder, little noise (denoised), fine JPEG;
- dslr: clean sensor, steeper contrast curve, mild vignetting, no visible JPEG;
- webcam: a small noisy sensor (strong read noise), low resolution, heavy JPEG, colour cast;
- film: faded blacks, warm cast, grain, strong vignetting and halation;
- painted: flat posterised colours, smoothed, no sensor at all (a drawing, not a photo).
Then, for every style, the framing: random zoom-crop, aspect ratio and roll (tilted horizon).
Shot noise grows with the square root of the signal, read noise is flat and both are
amplified by the gain, so high-ISO nights are noisy in their dark parts, as photos are.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

STYLES = ("phone", "dslr", "webcam", "film", "painted")

# Per style: (low, high) ranges each image draws from. gamma: the response curve's exponent;
# shoulder: highlight roll-off (0 = hard clip); black: lifted black level; contrast: S-curve
# strength; shot/read: noise at unit gain (share of full scale); jpeg: quality (0 = none);
# downscale: resolution share before upsampling back; blur: Gaussian radius in pixels;
# vignette: corner darkening; cast: white-balance shift in EV (red over blue, green over both);
# posterize: colour levels (0 = off); flare: chance of lens ghosts when a bright light is in frame.
_STYLE_RANGES = {
    "phone": dict(gamma=(2.0, 2.4), shoulder=(0.2, 0.5), black=(0.0, 0.01), contrast=(0.0, 0.3),
                  shot=(0.001, 0.004), read=(0.0002, 0.001), jpeg=(75, 95), downscale=(0.9, 1.0),
                  blur=(0.0, 0.5), vignette=(0.0, 0.2), cast=(-0.15, 0.15), posterize=(0, 0), flare=(0.3, 0.6)),
    "dslr": dict(gamma=(2.2, 2.6), shoulder=(0.0, 0.3), black=(0.0, 0.005), contrast=(0.2, 0.5),
                 shot=(0.0005, 0.002), read=(0.0001, 0.0005), jpeg=(0, 0), downscale=(1.0, 1.0),
                 blur=(0.0, 0.4), vignette=(0.1, 0.3), cast=(-0.1, 0.1), posterize=(0, 0), flare=(0.1, 0.3)),
    "webcam": dict(gamma=(1.7, 2.2), shoulder=(0.0, 0.2), black=(0.01, 0.04), contrast=(-0.2, 0.1),
                   shot=(0.003, 0.01), read=(0.001, 0.005), jpeg=(20, 60), downscale=(0.4, 0.7),
                   blur=(0.3, 1.0), vignette=(0.2, 0.5), cast=(-0.3, 0.3), posterize=(0, 0), flare=(0.0, 0.2)),
    "film": dict(gamma=(1.8, 2.2), shoulder=(0.4, 0.8), black=(0.04, 0.1), contrast=(-0.3, 0.0),
                 shot=(0.002, 0.006), read=(0.001, 0.003), jpeg=(60, 90), downscale=(0.8, 1.0),
                 blur=(0.4, 0.9), vignette=(0.3, 0.6), cast=(0.1, 0.35), posterize=(0, 0), flare=(0.4, 0.8)),
    "painted": dict(gamma=(1.8, 2.6), shoulder=(0.3, 0.7), black=(0.0, 0.03), contrast=(0.2, 0.6),
                    shot=(0.0, 0.0), read=(0.0, 0.0), jpeg=(0, 0), downscale=(0.5, 0.8),
                    blur=(0.8, 1.5), vignette=(0.0, 0.0), cast=(-0.2, 0.2), posterize=(4, 8), flare=(0.0, 0.0)),
}
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _draw(rng: np.random.Generator, style: str) -> dict:
    return {k: float(rng.uniform(*r)) for k, r in _STYLE_RANGES[style].items()}


def _flare(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Lens ghosts: faint discs on the line from the brightest light through the image centre."""
    size = image.shape[0]
    luma = image @ _LUMA
    row, col = np.unravel_index(int(np.argmax(luma)), luma.shape)
    if luma[row, col] < 1.0:  # nothing bright enough to flare
        return image
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size - 1) / 2
    tint = np.array([0.8, 0.9, 1.0], np.float32) * rng.uniform(0.6, 1.0, 3).astype(np.float32)
    for t in rng.uniform(-1.2, -0.3, int(rng.integers(2, 5))):  # ghosts sit across the centre
        gy, gx = centre + t * (row - centre), centre + t * (col - centre)
        radius = rng.uniform(1.5, 6.0)
        disc = np.clip(radius - np.hypot(yy - gy, xx - gx), 0, 1)
        image = image + (strength * 0.15 * disc)[..., None] * tint
    return image


def develop(radiance: np.ndarray, gain_ev: float, style: str, rng: np.random.Generator) -> np.ndarray:
    """float32 linear radiance [S, S, 3] exposed by 2**gain_ev -> uint8 [S, S, 3] through one camera
    of `style`. Noise scales with the gain (ISO): shot noise sqrt(signal), read noise flat."""
    c, size = _draw(rng, style), radiance.shape[0]
    cast = np.array([c["cast"], 0.0, -c["cast"]], np.float32) + np.float32(rng.uniform(-0.08, 0.08))
    signal = radiance * np.float32(2.0**gain_ev) * (2.0 ** cast).astype(np.float32)
    if rng.random() < c["flare"]:
        signal = _flare(signal, rng, float(rng.uniform(0.5, 1.5)))
    # A third of any gain above a day's comes from ISO (amplified noise), the rest from exposure time.
    iso = np.float32(2.0 ** (max(gain_ev + 1.0, 0.0) / 3))
    if c["shot"] or c["read"]:
        sigma = np.sqrt(c["shot"] * iso * np.clip(signal, 0, None) + (iso * np.float32(c["read"])) ** 2)
        signal = signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2) / (size / 2)
    signal = signal * (1 - c["vignette"] * 0.5 * (yy**2 + xx**2))[..., None]
    # Response: filmic shoulder x / (1 + s x) rescaled so 1 stays 1, then gamma, an S-curve, black lift.
    s = np.clip(signal, 0, None)
    s = np.minimum(s * (1 + c["shoulder"]) / (1 + c["shoulder"] * s), 1.0)
    v = s ** np.float32(1 / c["gamma"])
    v = np.clip(v + c["contrast"] * v * (1 - v) * (2 * v - 1) * 2, 0, 1)
    v = c["black"] + (1 - c["black"]) * v
    if c["posterize"]:
        levels = round(c["posterize"])
        v = np.round(v * (levels - 1)) / (levels - 1)
    image = Image.fromarray((v * 255 + 0.5).astype(np.uint8))
    if c["downscale"] < 0.99:
        small = max(8, round(size * c["downscale"]))
        image = image.resize((small, small), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    if c["blur"] > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(c["blur"]))
    image = _frame(image, rng)
    if c["jpeg"]:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=round(c["jpeg"]))
        image = Image.open(buffer).convert("RGB")
    # A floor of texture no photo or drawing lacks (film grain, paper, dark-frame noise), last so
    # blur and JPEG cannot flatten it: no image is a flat field, which would read as a blank frame.
    grain = rng.normal(0, 3.0, (size, size, 3)).astype(np.float32)
    return np.clip(np.asarray(image, np.float32) + grain + 0.5, 0, 255).astype(np.uint8)


def _frame(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random zoom-crop (1-1.35x), aspect ratio (0.8-1.25, squeezed back to square) and roll (+-8
    degrees about the centre, the crop kept inside the rotated frame so no empty corner shows)."""
    size = image.size[0]
    angle = float(rng.uniform(-8, 8)) if rng.random() < 0.5 else 0.0
    rad = np.radians(abs(angle))
    avail = size / (np.cos(rad) + np.sin(rad))  # the largest axis-aligned square inside the rotated frame
    aspect = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    side = avail / float(rng.uniform(1.0, 1.35))
    w, h = side * min(1.0, aspect), side * min(1.0, 1 / aspect)
    cx = size / 2 + rng.uniform(-1, 1) * (avail - w) / 2
    cy = size / 2 + rng.uniform(-1, 1) * (avail - h) / 2
    if angle:
        image = image.rotate(angle, resample=Image.BILINEAR)
    return image.resize((size, size), Image.BILINEAR, box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
