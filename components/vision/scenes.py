"""Procedural 64x64 outdoor scenes for a day-vs-night classifier (CS230's first application).

Scenes are lit, not painted: every light has a radiance in EV (log2 units, 0 = clear midday sky),
the sky's radiance and colour follow the sun elevation, and a camera turns radiance into pixels:
metering on the scene's own mean brightness, capped by the longest exposure and highest ISO the
camera allows (so a moonless night stays black, and lamps darken the rest of the frame), exposure
error, night mode, white balance, then one camera of the image's style (components/vision/camera.py:
response curve, shot and read noise, JPEG, blur, vignetting, flare, framing). So street lights
vanish by day and blaze at night for the same reason they do in photos: the exposure gain changes.
Palettes (sky tints), ground (grass, soil, rock, foliage, road, water, snow) and trees vary per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from components.vision.camera import develop

if TYPE_CHECKING:
    from components.config import DayNightParams

CONDITIONS = ("day", "night", "dusk_dawn", "overcast_day", "lit_city_night", "long_exposure_night",
              "artificial_light", "hazy")
GROUNDS = ("grass", "soil", "rock", "foliage", "road", "water", "snow")


@dataclass(frozen=True)
class SceneConfig:
    """Every knob of the renderer: params.yaml's day_night.generate (explained and checked there),
    with the label rule (labels.night_below_deg) and the image side."""
    size: int                     # images are size x size x 3
    night_share: float
    night_below_deg: float        # the label rule: night when the sun is lower
    twilight_share: float         # share of images with the sun within twilight_band_deg of the rule
    twilight_band_deg: float
    elevation_range_deg: tuple[float, float]
    overcast_share: float
    city_share: float
    artificial_light_share: float
    haze_share: float
    long_exposure_share: float    # of night images: night mode brightens them by up to 0.5-2 EV
    exposure_ev: tuple[float, float]      # auto-exposure error
    white_balance: tuple[float, float]    # EV of red over blue (+ warm, - cool)
    max_gain_ev: tuple[float, float]      # the camera's exposure limit over a day's gain
    styles: tuple[str, ...]               # camera styles, drawn uniformly
    auto_exposure: float          # share of the scene's brightness the camera's metering cancels

    @classmethod
    def from_params(cls, p: DayNightParams, **overrides) -> "SceneConfig":
        g = p.generate
        return cls(**{
            "size": p.image_size, "night_share": g.night_share, "night_below_deg": p.labels.night_below_deg,
            "twilight_share": g.twilight_share, "twilight_band_deg": g.twilight_band_deg,
            "elevation_range_deg": tuple(g.elevation_deg), "overcast_share": g.overcast_share,
            "city_share": g.city_share, "artificial_light_share": g.artificial_light_share,
            "haze_share": g.haze_share, "long_exposure_share": g.long_exposure_share,
            "exposure_ev": tuple(g.exposure_ev), "white_balance": tuple(g.white_balance),
            "max_gain_ev": tuple(g.max_gain_ev), "styles": tuple(g.styles), "auto_exposure": g.auto_exposure,
            **overrides})


@dataclass(frozen=True)
class SceneSpec:
    """Everything one image needs besides fine detail (star positions, window pattern, noise)."""
    sun_elevation_deg: float
    label: str              # "day" | "night", by label_for
    condition: str          # the hardest aspect, one of CONDITIONS
    sun_x: float            # horizontal position of the sun (and of the twilight glow), 0..1
    horizon: float          # height of the horizon, share of the image from the top
    overcast: bool
    cloud_cover: float      # 0..1
    city: bool
    lit_windows: float      # share of windows lit
    artificial_light: bool
    street_lights: int
    headlight_pairs: int
    haze: float             # 0 = clear air
    moon: bool
    exposure_ev: float      # auto-exposure error
    long_exposure_ev: float  # night-mode brightening, 0 when off
    white_balance: float
    max_gain_ev: float      # exposure limit: the most the camera can brighten a dark scene
    auto_exposure: float
    style: str              # the camera family, one of camera.STYLES
    ground: str             # one of GROUNDS
    trees: int              # tree crowns on the horizon
    light_pollution: float  # city and lamp glow in the low sky, x the usual


def label_for(sun_elevation_deg: float, cfg: SceneConfig) -> str:
    return "night" if sun_elevation_deg < cfg.night_below_deg else "day"


def sample_spec(rng: np.random.Generator, cfg: SceneConfig, night: bool) -> SceneSpec:
    """A random scene of the requested class: the sun's elevation first (twilight_share of them within
    twilight_band_deg of the rule), then weather, city, lights and camera, independently."""
    threshold, band = cfg.night_below_deg, cfg.twilight_band_deg
    low, high = cfg.elevation_range_deg
    if rng.random() < cfg.twilight_share:
        elev = rng.uniform(threshold - band, threshold) if night else rng.uniform(threshold, threshold + band)
    else:
        elev = rng.uniform(low, threshold - band) if night else rng.uniform(threshold + band, high)
    overcast = bool(rng.random() < cfg.overcast_share)
    city = bool(rng.random() < cfg.city_share)
    artificial = bool(rng.random() < cfg.artificial_light_share)
    haze = rng.uniform(0.2, 0.6) if rng.random() < cfg.haze_share else 0.0
    # Night mode brightens in proportion to the darkness it meets: little at the rule, full a band below.
    darkness = float(np.clip((threshold - elev) / band, 0, 1)) if band > 0 else 1.0
    long_ev = rng.uniform(0.5, 2.0) * darkness if night and rng.random() < cfg.long_exposure_share else 0.0
    label = label_for(elev, cfg)
    condition = ("dusk_dawn" if abs(elev - threshold) <= band else  # the hardest aspect comes first
                 "lit_city_night" if label == "night" and city else
                 "long_exposure_night" if label == "night" and long_ev > 0 else
                 "overcast_day" if label == "day" and overcast else
                 "artificial_light" if artificial else "hazy" if haze > 0 else label)
    return SceneSpec(
        sun_elevation_deg=float(elev), label=label, condition=condition,
        sun_x=rng.uniform(0.1, 0.9), horizon=rng.uniform(0.5, 0.75), overcast=overcast,
        cloud_cover=rng.uniform(0.9, 1.0) if overcast else rng.uniform(0.0, 0.6), city=city,
        lit_windows=rng.uniform(0.2, 0.8) if city else 0.0, artificial_light=artificial,
        street_lights=int(rng.integers(2, 7)) if artificial else 0,
        headlight_pairs=int(rng.integers(0, 3)) if artificial else 0, haze=float(haze),
        moon=bool(rng.random() < 0.4), exposure_ev=rng.uniform(*cfg.exposure_ev), long_exposure_ev=float(long_ev),
        white_balance=rng.uniform(*cfg.white_balance), max_gain_ev=rng.uniform(*cfg.max_gain_ev),
        auto_exposure=cfg.auto_exposure, style=str(rng.choice(cfg.styles)), ground=str(rng.choice(GROUNDS)),
        trees=int(rng.integers(0, 6)) if rng.random() < 0.5 else 0, light_pollution=float(rng.uniform(0.2, 1.2)))


def sky_ev(elev: np.ndarray | float) -> np.ndarray | float:
    """Sky radiance in EV: a smooth, strictly increasing S-curve from -14 EV (moonless night) to 0 (day),
    steepest (1.4 EV per degree) at civil twilight, as measured skies are."""
    return -14.0 / (1.0 + np.exp((np.asarray(elev) + 6.0) / 2.5))


# Sky colour (linear RGB, rescaled to unit luminance) against elevation, interpolated between these
# keyframes: navy night, purple then pink nautical/civil twilight, orange sunrise, blue day.
_KEY_ELEV = np.array([-30.0, -12.0, -6.0, -2.0, 4.0, 15.0, 70.0])
_ZENITH = np.array([[.25, .3, 1], [.3, .3, 1], [.45, .42, 1], [.5, .55, 1], [.45, .6, 1], [.35, .6, 1], [.3, .55, 1]])
_HORIZON = np.array([[.3, .3, 1], [.6, .4, .9], [1, .5, .6], [1, .55, .3], [1, .75, .5], [.8, .9, 1], [.8, .9, 1]])
_LUMA = np.array([0.2126, 0.7152, 0.0722])
_SODIUM, _WARM, _WHITE = (np.array(c, np.float32) for c in ([1.0, 0.6, 0.25], [1.0, 0.75, 0.4], [0.9, 0.95, 1.0]))


def _sky_colour(table: np.ndarray, elev: float) -> np.ndarray:
    rgb = np.array([np.interp(elev, _KEY_ELEV, table[:, c]) for c in range(3)])
    return (rgb / (rgb @ _LUMA)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """[size, size] float32 values in [0, 1], smooth over size/cells pixels (bilinear random grid)."""
    u = np.linspace(0, cells - 1, size, dtype=np.float32)
    i = np.minimum(u.astype(int), cells - 2)
    f = u - i
    grid = rng.random((cells, cells), dtype=np.float32)
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f) + rows[:, i + 1] * f


def _spots(x, y, xs, ys, sigma_px: float, size: int) -> np.ndarray:
    """Sum of Gaussian spots of width sigma_px centred at (xs, ys), as a [size, size] map."""
    xs, ys = np.asarray(xs, np.float32)[:, None, None], np.asarray(ys, np.float32)[:, None, None]
    return np.exp(((x - xs) ** 2 + (y - ys) ** 2) * (-(size**2) / (2 * sigma_px**2))).sum(axis=0)


def _city(spec, rng, y, horizon_y, ambient, sun_direct, zenith, size) -> tuple[np.ndarray, np.ndarray]:
    """A skyline of facades on the street line, with lit or unlit windows: (mask [S, S], radiance [S, S, 3])."""
    top = np.full(size, 2.0, np.float32)
    left = 0
    while left < size:
        width = int(rng.integers(5, 14))
        top[left:left + width] = spec.horizon - rng.uniform(0.08, 0.4)
        left += width + int(rng.integers(0, 3))
    building = (y >= top[None, :]) & (y < horizon_y)
    shade = 0.5 + 0.5 * np.interp(np.arange(size), np.arange(0, size + 12, 12), rng.random(size // 12 + 2))
    facade_rgb = rng.uniform(0.15, 0.35) * np.array([1.0, 0.95, 0.85]) * ambient * (0.6 + sun_direct)
    facade = (facade_rgb * shade[:, None]).astype(np.float32)[None]  # [1, S, 3]: shaded column by column
    index = np.arange(size)
    window = building & ((index % 3) == 1)[:, None] & ((index % 3) == 1)[None, :]
    lit = window & (rng.random((size // 3 + 1, size // 3 + 1)) < spec.lit_windows)[np.ix_(index // 3, index // 3)]
    # Lit windows are as bright as the sky at about -5.5 degrees: they stand out from dusk on.
    lit_rgb = 2.0**-6 * _WARM * (0.5 + rng.random((size, size, 1), dtype=np.float32))
    return building, np.where(lit[..., None], lit_rgb, np.where(window[..., None], 0.4 * zenith * ambient, facade))


def _lamps(spec, rng, x, y, on_ground, size) -> np.ndarray:
    """Street lights (with a pool of light below each) and car headlights, as a [S, S] radiance map."""
    lamps = np.zeros((size, size), np.float32)
    if spec.street_lights:
        lx = rng.uniform(0, 1, spec.street_lights)
        ly = spec.horizon + rng.uniform(-0.12, 0.05, spec.street_lights)
        lamps += 2.0**-4 * _spots(x, y, lx, ly, 0.8, size) + 2.0**-10 * _spots(x, y, lx, ly, 3.5, size)
        lamps += 2.0**-11 * _spots(x, y, lx, ly + 0.12, 5.0, size) * on_ground
    if spec.headlight_pairs:
        cx = rng.uniform(0.1, 0.9, spec.headlight_pairs)
        cy = rng.uniform(spec.horizon + 0.05, 0.95, spec.headlight_pairs)
        hx, hy = np.concatenate([cx - 0.03, cx + 0.03]), np.concatenate([cy, cy])
        lamps += 2.0**-2 * _spots(x, y, hx, hy, 0.6, size) + 2.0**-9 * _spots(x, y, hx, hy, 2.5, size)
    return lamps


_ALBEDO = {"grass": (.12, .2, .06), "soil": (.25, .2, .12), "rock": (.15, .15, .15), "foliage": (.05, .13, .04),
           "road": (.12, .2, .06), "water": (.02, .03, .04), "snow": (.75, .78, .85)}


def _ground(spec, rng, sky, x, y, horizon_y, light, size) -> np.ndarray:
    """[S, S, 3] radiance of the ground, for every pixel (the caller keeps those below the horizon):
    textured albedo under `light`; water mirrors the sky; a road runs to a vanishing point."""
    albedo = np.array(_ALBEDO[spec.ground], np.float32) * np.float32(2.0 ** rng.normal(0, 0.2))
    cells = 20 if spec.ground in ("foliage", "rock") else 9
    ground = albedo * light * (0.7 + 0.6 * _smooth_noise(rng, size, cells))[..., None]
    below = np.clip(y - horizon_y, 0, None)
    if spec.ground == "water":  # the sky mirrored about the horizon, darkened, with ripples
        rows = np.clip((2 * horizon_y - y) * size, 0, size - 1).astype(int)
        mirror = sky[rows, np.arange(size)[None, :]]
        ripple = 0.6 + 0.3 * _smooth_noise(rng, size, 24)[..., None]
        ground = ground + 0.5 * mirror * ripple
    if spec.ground == "road":
        centre = rng.uniform(0.3, 0.7)
        half = 0.02 + 0.6 * below  # widens towards the camera
        road = np.abs(x - centre) < half
        dashes = (np.abs(x - centre) < 0.004 + 0.03 * below) & ((below * 40 % 2) < 1)
        asphalt = np.float32(rng.uniform(0.06, 0.12)) * light * np.ones(3, np.float32)
        ground = np.where(road[..., None], np.where(dashes[..., None], 0.5 * light, asphalt), ground)
    return ground.astype(np.float32)


def _trees(spec, rng, rad, x, y, horizon_y, light, size) -> np.ndarray:
    """Tree crowns (discs on trunks) standing on the horizon, lit like foliage."""
    colour = np.array(_ALBEDO["foliage"], np.float32) * light
    for _ in range(spec.trees):
        cx, r = rng.uniform(0, 1), rng.uniform(0.04, 0.12)
        base = float(np.interp(cx, x[0], horizon_y[0]))  # horizon_y is [1, S]
        cy = base - r - rng.uniform(0.0, 0.05)
        crown = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        trunk = (np.abs(x - cx) < 0.01) & (y > cy) & (y < base + 0.02)
        shade = 0.6 + 0.5 * _smooth_noise(rng, size, 16)[..., None]
        rad = np.where((crown | trunk)[..., None], colour * shade, rad)
    return rad


def render(spec: SceneSpec, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3] RGB image of `spec`; fine detail comes from `rng`. Works in float32
    radiance (1.0 = clear midday sky), composited back to front: sky, clouds, ground, city, lamps, haze."""
    e, ev = spec.sun_elevation_deg, float(sky_ev(spec.sun_elevation_deg))
    sky_light = np.float32(2.0**ev)
    cloud_dim = 0.25 if spec.overcast else 1.0   # overcast: the sky 2 EV under the open sky; ground 1 EV
    ambient = sky_light * np.float32(cloud_dim**0.5)
    # Palettes: each image tints its sky a little (a sky model is a family, not one curve).
    tint = lambda: (2.0 ** rng.normal(0, 0.12, 3)).astype(np.float32)  # noqa: E731
    zenith, horizon_rgb = _sky_colour(_ZENITH, e) * tint(), _sky_colour(_HORIZON, e) * tint()
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = axis[:, None], axis[None, :]
    hills = np.interp(axis, np.linspace(0, 1, 6), rng.random(6)).astype(np.float32) - 0.5
    horizon_y = np.float32(spec.horizon) + np.float32(0.06 * (not spec.city)) * hills[None, :]  # cities: flat
    height = np.sqrt(np.clip((horizon_y - y) / horizon_y, 0, 1))[..., None]  # 0 at the horizon, 1 at the top

    # Sky: zenith-to-horizon gradient, with the sunrise/sunset glow on the sun's side at twilight.
    glow = 1.5 + 3.0 * np.exp(-((e + 2) / 4) ** 2) * np.exp(-(((x - spec.sun_x) / 0.3) ** 2))[..., None]
    rad = (height * zenith + (1 - height) * horizon_rgb * glow) * sky_light
    lights = np.zeros((size, size), np.float32)  # stars, moon and sun
    n_stars = int(rng.integers(15, 60))
    # The brightest stars match the sky near -7 degrees, so, as outdoors, they come out at civil dusk.
    lights[rng.integers(0, size, n_stars), rng.integers(0, size, n_stars)] = 2.0**-8 * rng.uniform(0.2, 1, n_stars)
    if spec.moon:  # the moon is there by day too, just too faint against the sky to see
        mx, my = rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.35)
        lights += 2.0**-3 * (_spots(x, y, [mx], [my], 1.0, size) > 0.4) + 2.0**-8 * _spots(x, y, [mx], [my], 4.0, size)
    if e > -1.5:  # the sun's disc: the image spans about 50 degrees of elevation
        sx, sy = [spec.sun_x], [spec.horizon - e / 50.0]
        lights += 2.0**3 * (_spots(x, y, sx, sy, 1.5, size) > 0.3) + 2.0 * sky_light * _spots(x, y, sx, sy, 5.0, size)
    rad += lights[..., None]
    # Light pollution: cities and lamps light the low sky, and the clouds more, orange.
    pollution = 2.0**-10 * spec.light_pollution * (3.0 * spec.city + spec.artificial_light) * _SODIUM * np.exp((y - horizon_y) * 4.0)[..., None]

    # Clouds hide stars, moon and sun; lit white by day, pink at twilight, by city glow at night.
    field = _smooth_noise(rng, size, 5)
    k = min(int((1 - spec.cloud_cover) * field.size), field.size - 1)  # cover that share of the sky
    cover = np.clip((field - np.partition(field.ravel(), k)[k]) * 4 + 0.5, 0, 1) * (spec.cloud_cover > 0.05)
    cover = np.ones_like(field) if spec.overcast else cover
    twilight = np.exp(-((e + 3) / 6) ** 2)
    cloud_rgb = (1 - twilight) + twilight * horizon_rgb
    clouds = (sky_light * cloud_dim) * (0.75 + 0.5 * field)[..., None] * cloud_rgb + 3.0 * pollution
    rad += (clouds - rad) * cover[..., None] + pollution

    # Ground lit by the sky (and by the sun when up and not behind overcast), textured.
    sun_direct = 1.5 * max(np.sin(np.radians(e)), 0.0) * (0.2 if spec.overcast else 1.0)
    on_ground = y >= horizon_y
    ground = _ground(spec, rng, rad, x, y, horizon_y, ambient * (0.6 + sun_direct), size)
    rad = np.where(on_ground[..., None], ground, rad)
    if spec.trees:
        rad = _trees(spec, rng, rad, x, y, horizon_y, ambient * (0.6 + sun_direct), size)
    if spec.city:
        building, facades = _city(spec, rng, y, horizon_y, ambient, sun_direct, zenith, size)
        rad = np.where(building[..., None], facades, rad)
    if spec.artificial_light:
        rad += _lamps(spec, rng, x, y, on_ground, size)[..., None] * (_SODIUM if rng.random() < 0.6 else _WHITE)
    if spec.haze > 0:  # haze veils the distance (near the horizon) with the horizon's light
        veil = spec.haze * np.exp(np.abs(y - horizon_y) * -4.0)[..., None]
        rad += (horizon_rgb * (sky_light * cloud_dim * 1.2) - rad) * veil

    # Camera: metering cancels part of the scene's measured brightness (highlights clipped, so the sun
    # does not black out a day), up to the camera's exposure limit; then exposure error, night mode
    # (a longer exposure past the limit) and white balance; the style's camera develops the rest.
    metered = float(np.log2(np.clip(rad @ _LUMA, 0, 2).mean() + 2.0**-16) + 1.0)  # 0 for a clear day
    gain_ev = min(-1.0 - spec.auto_exposure * metered, -1.0 + spec.max_gain_ev)
    gain_ev += spec.exposure_ev + spec.long_exposure_ev
    balance = (2.0 ** np.array([spec.white_balance, 0.0, -spec.white_balance])).astype(np.float32)
    return develop(rad * balance, gain_ev, spec.style, rng)


def generate(cfg: SceneConfig, seed: int, n: int, first: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Images first..first+n-1 and one frame row per image. Image i depends only on (seed, i): its own
    seed sequence, and a night flag that spreads exactly round(n * night_share) nights over any run of
    consecutive indices (to within one). Disjoint index ranges draw from disjoint random streams."""
    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    rows = []
    for i in range(first, first + n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        night = round((i + 1) * cfg.night_share) > round(i * cfg.night_share)
        spec = sample_spec(rng, cfg, night)
        images[i - first] = render(spec, rng, cfg.size)
        rows.append({"image_id": f"scene-{i:06d}", **vars(spec)})
    return images, pd.DataFrame(rows)


def contact_sheet(images: np.ndarray, frame: pd.DataFrame, path: Path, n: int = 48, by: str = "condition") -> None:
    """A grid of up to n images, taken from each group of `by` (condition, style) in turn so every
    hard case shows; day and night alternate within a group."""
    from matplotlib.figure import Figure

    by_condition = [list(g.sort_values("label", kind="stable").groupby("label").cumcount().sort_values(kind="stable").index)
                    for _, g in frame.groupby(by, sort=True)]
    picks = [ids[k] for k in range(max(map(len, by_condition), default=0)) for ids in by_condition if k < len(ids)][:n]
    cols = min(8, max(len(picks), 1))
    rows = max(1, -(-len(picks) // cols))
    fig = Figure(figsize=(1.6 * cols, 1.75 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picks):
        row = frame.loc[index]
        ax.imshow(images[frame.index.get_loc(index)], interpolation="nearest")
        elevation = "" if pd.isna(row["sun_elevation_deg"]) else f" {row['sun_elevation_deg']:+.1f}\u00b0"
        style = f" {row['style']}" if by == "style" else ""
        ax.set_title(f"{row['label']}{elevation}{style}\n{row['condition']}", fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
