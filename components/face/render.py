"""A procedural face renderer: identities (identities.py) drawn as RGB uint8 chips in dlib's
alignment geometry (chip.py), vectorised over a batch of images.

2.5-D: every feature sits on a head-shaped surface (a cylinder across, an arc top to bottom)
with its own depth (the nose tip stands out, the eyes sit in), so yaw and pitch move near
features more than far ones and foreshorten them; the posed, rolled face is then aligned by
its 5 landmarks (with a landmark error, as a real aligner has) onto dlib's template.
Shading is Lambertian on a height field (head + nose + eye sockets) under a per-image light.
"""
from __future__ import annotations

import io

import numpy as np

from components.face import chip
from components.face.identities import HAIR_STYLES

METERED = 120.0  # the grey level (0-255) the camera's metering aims the face at
SCLERA, TEETH, LASH = np.array([236, 230, 224]), np.array([235, 230, 215]), np.array([30, 24, 22])
LONG, BUZZ, FRINGE, PULLED, PART = (HAIR_STYLES.index(s) for s in ("long", "buzz", "fringe", "pulled_back", "side_part"))


def _c(a) -> np.ndarray:  # per-image values [B] -> [B, 1, 1] against the pixel grid
    return np.asarray(a, dtype=np.float32)[:, None, None]


def _ellipse(x, y, cx, cy, rx, ry, aa):
    """Soft coverage (0..1) of an axis-aligned ellipse."""
    q = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip(0.5 - (q - 1) * np.minimum(rx, ry) / aa, 0, 1)


def _paint(img, alpha, colour):
    """Over-composite `colour` ([3] or per image [B, 3]) with coverage alpha [B, S, S], in place.
    Only the images and the box of rows and columns the alpha touches are computed: most
    features cover a small part of the chip, accessories a few images of the batch."""
    colour = np.asarray(colour, dtype=np.float32)
    alpha = np.broadcast_to(alpha, img.shape[:3])
    hit = alpha > 0
    images = np.flatnonzero(hit.any((1, 2)))
    if not len(images):
        return
    rows, cols = np.flatnonzero(hit.any((0, 2))), np.flatnonzero(hit.any((0, 1)))
    r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    every = len(images) == len(img)
    pick = slice(None) if every else images
    block = img[:, r, c] if every else img[images, r, c]
    target = colour[pick, None, None, :] if colour.ndim == 2 else colour
    block += alpha[pick, r, c][..., None] * (target - block)
    if not every:
        img[images, r, c] = block


class Pose:
    """The 2.5-D projection of frontal template points for one batch."""

    def __init__(self, t, n):
        self.cx, self.cy, self.rh, self.rv = _c(np.full(len(n["yaw"]), 0.49)), _c(t["face_cy"]), _c(t["face_rx"]), _c(t["face_ry_top"] * 1.1)
        self.yaw, self.pitch = _c(np.radians(n["yaw"])), _c(np.radians(n["pitch"]))

    def point(self, x, y, h=0.0):
        """(x, y) of frontal points after yaw and pitch, and the x/y foreshortening there."""
        dx, dy = x - self.cx, y - self.cy
        sx, sy = np.clip(dx / self.rh, -0.99, 0.99), np.clip(dy / self.rv, -0.99, 0.99)
        z = self.rh * np.sqrt(1 - sx ** 2) * np.sqrt(1 - sy ** 2) + h
        x1 = dx * np.cos(self.yaw) + z * np.sin(self.yaw)
        z1 = -dx * np.sin(self.yaw) + z * np.cos(self.yaw)
        y1 = dy * np.cos(self.pitch) + z1 * np.sin(self.pitch)
        phi, theta = np.arcsin(sx), np.arcsin(sy)
        fx = np.clip(np.cos(phi + self.yaw) / np.cos(phi), 0.1, 1.3)
        fy = np.clip(np.cos(theta + self.pitch) / np.cos(theta), 0.1, 1.3)
        return self.cx + x1, self.cy + y1, fx, fy


def landmarks(t, n, pose: Pose) -> np.ndarray:
    """The 5 landmarks of each posed face (dlib's order), frontal template frame [B, 5, 2]."""
    pts = []
    for side in (1, -1):  # image right eye first (dlib: parts 0-1), outer corner then inner
        ex = 0.49 + side * t["eye_dx"]
        for k in (1, -1):
            pts.append((ex + side * k * t["eye_rx"] * np.cos(t["eye_tilt"]), t["eye_y"] - side * k * t["eye_rx"] * np.sin(t["eye_tilt"]), -0.03))
    pts.append((np.full_like(ex, 0.49), t["nose_y"], 0.5 * t["nose_h"]))
    out = [pose.point(_c(x), _c(y), _c(h) if np.ndim(h) else h)[:2] for x, y, h in pts]
    return np.stack([np.stack([x[:, 0, 0], y[:, 0, 0]], -1) for x, y in out], 1)


def grid(t, n, pose: Pose, size: int, alignment_jitter: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posed-face coordinates (X, Y) [B, S, S] of every chip pixel, and the pixel size there."""
    lm = landmarks(t, n, pose)
    roll = np.radians(n["roll"])
    rot = np.stack([np.stack([np.cos(roll), -np.sin(roll)], -1), np.stack([np.sin(roll), np.cos(roll)], -1)], -2)
    centre = lm.mean(1, keepdims=True)
    seen = np.einsum("bij,bkj->bki", rot, lm - centre) + centre  # the photo: the rolled face
    seen = seen + n["jitter"] * alignment_jitter  # the aligner's landmark error
    m = chip.similarity(chip.TEMPLATE[None], seen)  # template -> photo (the inverse of dlib's alignment)
    back = rot.transpose(0, 2, 1)  # undo the roll
    u = chip.from_chip(np.arange(size) + 0.5, size)
    tx, ty = np.meshgrid(u, u)
    px = m[:, 0, 0, None, None] * tx + m[:, 0, 1, None, None] * ty + m[:, 0, 2, None, None] - centre[:, 0, 0, None, None]
    py = m[:, 1, 0, None, None] * tx + m[:, 1, 1, None, None] * ty + m[:, 1, 2, None, None] - centre[:, 0, 1, None, None]
    x = back[:, 0, 0, None, None] * px + back[:, 0, 1, None, None] * py + centre[:, 0, 0, None, None]
    y = back[:, 1, 0, None, None] * px + back[:, 1, 1, None, None] * py + centre[:, 0, 1, None, None]
    scale = np.sqrt(np.abs(np.linalg.det(m[:, :, :2])))
    return x.astype(np.float32), y.astype(np.float32), _c(scale * 1.5 / size)


def _hair(img, x, y, t, n, pose, aa, hair_rgb, front: bool):
    """Long hair behind the head (front=False), or the cap, hairline and fringe (front=True)."""
    style, vol = n["hair_style"], _c(t["hair_volume"])
    cx, cy, rx = pose.cx + 0.35 * pose.rh * np.sin(pose.yaw), pose.cy, _c(t["face_rx"])
    top = _c(t["face_ry_top"])
    if not front:
        a = _ellipse(x, y, cx, cy + 0.25, rx * 1.25 + vol, top * 1.3 + vol, aa) * _c(style == LONG)
        return _paint(img, a * np.clip((1.45 - y) / 0.1, 0, 1), hair_rgb)
    cap = _ellipse(x, y, cx, cy + 0.02, rx * 1.04 + vol * 0.6, top * 1.02 + vol, aa)
    hx, hy, _, _ = pose.point(_c(np.full(len(style), 0.49)), _c(t["hairline"]), 0.0)
    part = np.where(style == PART, 0.15, 0.0)
    line = hy + 0.18 * ((x - hx - _c(part)) / rx) ** 2 - _c(np.where(style == PULLED, 0.06, 0.0))
    line = np.where(_c(style == FRINGE), np.maximum(line, hy + 0.08 + 0.02 * np.sin(40 * x)), line)
    temples = np.abs(x - cx) > rx * 0.86
    below = np.clip((line - y) / aa, 0, 1)
    cover = cap * np.maximum(below, temples * (y < _c(t["eye_y"]) - 0.02) * _c(style == LONG))
    alpha = cover * _c(np.where(style == BUZZ, 0.55, 1.0))
    _paint(img, alpha, hair_rgb)


def _eyes(img, x, y, t, n, pose, aa, skin):
    open_ = 1 - 0.6 * n["squint"] - 0.3 * n["smile"]
    for side in (1, -1):
        ex, ey, fx, fy = pose.point(_c(0.49 + side * t["eye_dx"]), _c(t["eye_y"]), -0.03)
        rx, ry = _c(t["eye_rx"]) * fx, _c(t["eye_ry"] * open_) * fy
        img *= 1 - 0.22 * _ellipse(x, y, ex, ey + 0.01, rx * 1.5, _c(t["eye_ry"]) * 2.6 * fy, 4 * aa)[..., None]  # the socket
        eye = _ellipse(x, y, ex, ey, rx, ry, aa)
        _paint(img, eye, SCLERA)
        ir = _c(t["eye_ry"]) * 0.95 * fy
        gaze = 0.2 * rx * np.sin(pose.yaw)
        _paint(img, eye * _ellipse(x, y, ex + gaze, ey, ir * fx, ir, aa), t["eye_rgb"])
        _paint(img, eye * _ellipse(x, y, ex + gaze, ey, ir * 0.45 * fx, ir * 0.45, aa), LASH)
        lid = _ellipse(x, y, ex, ey - ry * 0.25, rx * 1.05, ry * 1.1, aa) * (1 - _ellipse(x, y, ex, ey + ry * 0.05, rx * 1.02, ry * 1.05, aa))
        _paint(img, lid * (y < ey), LASH)
        # the brow: a thick arc above the eye
        bx, by, bfx, _ = pose.point(_c(0.49 + side * (t["eye_dx"] + 0.02)), _c(t["eye_y"] - t["brow_gap"] - 0.03 * n["brow_raise"]), 0.0)
        dxb = (x - bx) / (_c(t["brow_len"]) * bfx)
        centre = by - _c(t["brow_arch"]) * (1 - dxb ** 2) + side * _c(t["brow_tilt"]) * dxb * 0.05
        thick = _c(t["brow_thick"]) * (1 - 0.4 * np.clip(side * dxb, 0, 1))
        brow = np.clip(1 - np.abs(dxb) ** 6, 0, 1) * np.clip(0.5 - (np.abs(y - centre) - thick / 2) / aa, 0, 1)
        _paint(img, 0.9 * brow, np.minimum(0.55 * t["hair_rgb"], 0.5 * skin))


def _mouth(img, x, y, t, n, pose, aa, skin):
    mx, my, fx, fy = pose.point(_c(np.full(len(x), 0.49)), _c(t["mouth_y"]), 0.02)
    mw = _c(t["mouth_w"] * (1 + 0.15 * n["smile"])) * fx
    u = np.clip((x - mx) / mw, -1.2, 1.2)
    shape = np.sqrt(np.clip(1 - u ** 2, 0, 1))
    mid = my - _c(0.05 * n["smile"]) * u ** 2
    gap = _c(0.045 * n["mouth_open"]) * fy * shape
    tint = t["lip_tint"][:, None]
    lips = skin * (1 - tint) + np.array([150, 40, 50]) * tint
    upper = np.clip(0.5 - (mid - gap / 2 - _c(t["lip_up"]) * fy * shape - y) / aa, 0, 1) * (y < mid)
    lower = np.clip(0.5 - (y - mid - gap / 2 - _c(t["lip_low"]) * fy * shape) / aa, 0, 1) * (y >= mid)
    inside = (np.abs(u) < 1)
    seam = np.clip(0.5 - (np.abs(y - mid) - 0.006) / aa, 0, 1) * np.clip(shape * 3, 0, 1)
    _paint(img, inside * np.clip(0.5 - (np.abs(y - mid) - gap / 2) / aa, 0, 1) * (gap > 0.004), np.array([60, 20, 25]))
    _paint(img, inside * np.clip(0.5 - (np.abs(y - mid + gap * 0.2) - gap / 4) / aa, 0, 1) * (gap > 0.01) * (np.abs(u) < 0.6), TEETH)
    img_lips = inside * (upper + lower) * np.clip(shape * 4, 0, 1) * (np.abs(y - mid) > gap / 2 - aa)
    _paint(img, np.clip(img_lips, 0, 1), lips)
    _paint(img, 0.8 * inside * seam, skin * 0.35)


def _nose(img, x, y, t, n, pose, aa, skin):
    nx, ny, fx, _ = pose.point(_c(np.full(len(x), 0.49)), _c(t["nose_y"]), _c(t["nose_h"]) * 0.5)
    w = _c(t["nose_w"]) * fx
    for side in (1, -1):
        _paint(img, 0.55 * _ellipse(x, y, nx + side * w * 0.5, ny - 0.012, w * 0.28, 0.014, aa), 0.45 * skin)
    return nx, ny, w


def _segment(x, y, ax, ay, bx, by):
    """Distance of every pixel to the segment a-b."""
    vx, vy = bx - ax, by - ay
    h = np.clip(((x - ax) * vx + (y - ay) * vy) / (vx ** 2 + vy ** 2 + 1e-9), 0, 1)
    return np.hypot(x - ax - h * vx, y - ay - h * vy)


def _face_mask(x, y, t, n, pose, aa, grow=0.0):
    cx, cy, rx = pose.cx, pose.cy, _c(t["face_rx"]) + grow
    chin = _c(t["face_ry_chin"]) * (1 - 0.3 * np.sin(pose.pitch)) + grow
    lower = y > cy
    ry = np.where(lower, chin, _c(t["face_ry_top"]) + grow)
    power = np.where(lower, _c(t["jaw_power"]), 2.0)
    q = (np.abs(x - cx) / rx) ** power + ((y - cy) / ry) ** 2
    return np.clip(0.5 - (q - 1) * rx / (2 * aa), 0, 1)


def _glasses(img, x, y, t, n, pose, aa):
    on = _c(n["glasses"])
    rect = _c(n["glasses_style"] > 0.5)
    frame = np.where((n["glasses_style"] % 0.5 > 0.25)[:, None], 1.0, 0.0) * np.array([150, 130, 90]) + 25  # dark or gold
    lens_y = _c(t["eye_y"] + 0.01)
    inner = []
    for side in (1, -1):
        ex, ey, fx, fy = pose.point(_c(0.49 + side * t["eye_dx"]), lens_y, 0.02)
        rx, ry = _c(t["eye_rx"] * 1.45) * fx, 0.085 * fy
        power = 2 + 3 * rect
        q = (np.abs(x - ex) / rx) ** power + (np.abs(y - ey) / ry) ** power
        inside = np.clip(0.5 - (q - 1) * ry / (2 * aa), 0, 1)
        ring = inside * np.clip(((q ** (1 / power)) - 1 + 0.012 / ry) * ry / aa, 0, 1)
        _paint(img, on * _c(n["sunglasses"]) * 0.85 * inside, np.array([25, 30, 35]))
        _paint(img, on * inside * 0.08, np.array([230, 240, 255]))  # the lens' sheen
        _paint(img, on * np.clip(ring, 0, 1), frame)
        inner.append((ex - side * rx, ey))
    (ax, ay), (bx, by) = inner
    _paint(img, on * np.clip(0.5 - (_segment(x, y, ax, ay - 0.02, bx, by - 0.02) - 0.008) / aa, 0, 1), frame)


def _occlude(img, x, y, t, n, pose, aa):
    kind, pos = n["occlusion"], n["occ_pos"]
    colour = np.where((pos[:, 2] > 0.5)[:, None], np.array([200, 215, 230]), np.array([40, 40, 48])) * (0.6 + 0.6 * pos[:, :1])
    blob = _ellipse(x, y, _c(-0.1 + 1.2 * pos[:, 0]), _c(0.4 + 0.8 * pos[:, 1]), 0.22, 0.3, aa)
    mask = _face_mask(x, y, t, n, pose, aa, 0.04) * (y > _c(t["nose_y"]) - 0.02)
    hat = y < _c(t["hairline"]) + 0.06 + 0.08 * _c(pos[:, 1])
    kind = kind[:, None, None]
    alpha = np.select([kind == 1, kind == 2, kind == 3], [blob, mask, hat * 1.0], 0.0)
    _paint(img, alpha, colour)


def _shade(img, x, y, t, n, pose, aa, nose):
    nx, ny, w = nose
    dx, dy = (x - pose.cx) / (_c(t["face_rx"]) * 1.05), (y - pose.cy) / (_c(t["face_ry_top"]) * 1.05)
    z = _c(t["face_rx"]) * np.sqrt(np.clip(1 - dx ** 2 - dy ** 2, 0, 1))
    along = np.clip((y - (ny - 0.4)) / 0.4, 0, 1)  # the ridge rises from between the eyes to the tip
    ridge = np.exp(-((x - nx) / (w * (0.5 + 0.6 * along))) ** 2) * along ** 1.5 * np.exp(-np.clip(y - ny + 0.02, 0, None) ** 2 / 0.0008)
    z = z + 0.6 * _c(t["nose_h"]) * ridge
    for side in (1, -1):
        ex, ey, _, _ = pose.point(_c(0.49 + side * t["eye_dx"]), _c(t["eye_y"]), 0.0)
        z = z - 0.04 * np.exp(-((x - ex) ** 2 + (y - ey) ** 2) / 0.006)
    gy, gx = np.gradient(z, axis=(1, 2))
    normal = np.stack([-gx / aa, -gy / aa, np.ones_like(z)], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    el, az = n["light_el"], n["light_az"]
    light = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    lambert = np.clip(np.einsum("bhwc,bc->bhw", normal, light), 0, 1)
    amb, strength = _c(n["ambient"]), _c(n["light_strength"])
    img *= ((amb + strength * lambert) / (amb + strength * _c(np.sin(el))))[..., None]
    # a specular sheen (Blinn-Phong) where the skin faces halfway between light and camera
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    sheen = np.clip(np.einsum("bhwc,bc->bhw", normal, half), 0, 1) ** 24 * (z > 0.02)
    img += (60 * strength * sheen)[..., None]


def draw(t, n, size: int, alignment_jitter: float) -> np.ndarray:
    """float RGB [B, S, S, 3] (0-255, before the camera's degradations) of one batch."""
    pose = Pose(t, n)
    x, y, aa = grid(t, n, pose, size, alignment_jitter)
    bg = n["background"] * 200 + 30
    img = (bg[:, None, None, :] * (0.85 + 0.3 * (x - 0.5))[..., None]).astype(np.float32)
    ageing = np.clip((n["age"] - 35) / 35, 0, 1)
    grey = np.clip((n["age"] - 40) / 30, 0, 0.85)[:, None]
    hair_rgb = t["hair_rgb"] * (1 - grey) + np.array([178, 176, 172]) * grey
    skin = t["skin_rgb"] * (1 + np.stack([t["redness"], -t["redness"] * 0.5, -t["redness"]], -1)) * (1 - 0.06 * ageing[:, None])
    _hair(img, x, y, t, n, pose, aa, hair_rgb, front=False)
    _paint(img, (np.abs(x - pose.cx) < _c(t["face_rx"]) * 0.6) * (y > pose.cy + 0.3), skin * 0.65)
    for side in (1, -1):
        angle = side * np.radians(95) + pose.yaw
        ear_x = pose.cx + _c(t["face_rx"]) * 1.02 * np.sin(angle)
        visible = np.clip((np.radians(100) - np.abs(angle)) / np.radians(10), 0, 1)
        _, ear_y, _, _ = pose.point(_c(np.full(len(x), 0.49)), _c((t["eye_y"] + t["nose_y"]) / 2), 0.0)
        _paint(img, visible * _ellipse(x, y, ear_x, ear_y, _c(t["ear_size"]) * 0.45, _c(t["ear_size"]), aa), skin * 0.92)
    face = _face_mask(x, y, t, n, pose, aa)
    _paint(img, face, skin)
    for k in range(t["moles"].shape[1]):
        m = t["moles"][:, k]
        mx, my, _, _ = pose.point(_c(0.1 + 0.8 * m[:, 0]), _c(0.3 + 0.7 * m[:, 1]), 0.0)
        _paint(img, face * _c(m[:, 2] > 0.6) * _ellipse(x, y, mx, my, _c(0.006 + 0.03 * (m[:, 2] - 0.6)), _c(0.006 + 0.03 * (m[:, 2] - 0.6)), aa), skin * 0.5)
    nose = _nose(img, x, y, t, n, pose, aa, skin)
    _, my, _, _ = pose.point(_c(np.full(len(x), 0.49)), _c(t["mouth_y"]), 0.0)
    beard = face * np.clip((y - (my - 0.13 + 0.18 * (np.abs(x - nose[0]) / _c(t["face_rx"])) ** 2)) / 0.03, 0, 1)
    stubble = 0.55 + 0.45 * np.sin(x * 331.0 + y * 127.0) * np.sin(y * 293.0 - x * 71.0)
    _paint(img, _c(n["beard"] * n["beard_density"]) * beard * stubble * 0.9, hair_rgb * 0.8)
    _eyes(img, x, y, t, n, pose, aa, skin)
    _mouth(img, x, y, t, n, pose, aa, skin)
    for side in (1, -1):  # age: nasolabial folds and forehead lines
        ex, ey, _, _ = pose.point(_c(0.49 + side * t["eye_dx"]), _c(t["eye_y"]), 0.0)
        fold = _segment(x, y, nose[0] + side * nose[2] * 0.8, nose[1] - 0.02, nose[0] + side * _c(t["mouth_w"]) * 1.2, my + 0.04)
        _paint(img, _c(0.35 * ageing) * np.clip(0.5 - (fold - 0.004) / aa, 0, 1), skin * 0.7)
    lines = (np.abs(np.sin((y - _c(t["eye_y"])) * np.pi / 0.045)) > 0.85) * (y < _c(t["eye_y"] - t["brow_gap"]) - 0.05)
    _paint(img, _c(0.3 * ageing) * face * lines, skin * 0.75)
    _hair(img, x, y, t, n, pose, aa, hair_rgb, front=True)
    _shade(img, x, y, t, n, pose, aa, nose)
    _glasses(img, x, y, t, n, pose, aa)
    _occlude(img, x, y, t, n, pose, aa)
    return img


def degrade(img: np.ndarray, n: dict, size: int) -> np.ndarray:
    """The camera: exposure, greyscale, blur, sensor noise, JPEG; float [B,S,S,3] -> uint8."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    # auto-exposure metered on the centre of the face (partly: dark skin stays darker than light)
    centre = img[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4].mean((1, 2, 3))
    gain = np.clip((METERED / np.maximum(centre, 1.0)) ** 0.5, 0.7, 2.0) * n["exposure"]
    img = img * gain[:, None, None, None].astype(np.float32)
    img[n["grey"]] = img[n["grey"]].mean(-1, keepdims=True)
    out = np.empty(img.shape, dtype=np.uint8)
    for k in range(len(img)):
        sigma = n["blur"][k] * size / 64
        frame = gaussian_filter(img[k], (sigma, sigma, 0)) if sigma > 0.25 else img[k]
        frame = frame + np.random.default_rng(n["noise_seed"][k]).standard_normal(frame.shape) * n["noise"][k] * 255
        out[k] = np.clip(frame + 0.5, 0, 255)
        if n["jpeg"][k] > 0:
            buffer = io.BytesIO()
            Image.fromarray(out[k]).save(buffer, "JPEG", quality=int(n["jpeg"][k]))
            out[k] = np.asarray(Image.open(buffer))
    return out
