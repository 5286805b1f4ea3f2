"""Real photos -> face chips in dlib's alignment geometry (the renderer's geometry, chip.py).

dlib's HOG frontal detector finds the faces, its 5-point shape predictor places the eye
corners and nose base, and dlib.get_face_chip maps them onto the chip template. With
cropped=True the whole image is taken as the face (a photo that is already a chip).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from components.face.chip import PADDING

# The detector upsamples the photo once so faces down to ~40 px are found (dlib's own default
# in face_recognition); a bigger number finds smaller faces at 4x the time per step.
UPSAMPLE = 1


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the (EXIF-upright) photo
    chip: np.ndarray                # uint8 [size, size, 3] RGB


@lru_cache(maxsize=1)
def _models():
    import dlib
    import face_recognition_models

    return dlib.get_frontal_face_detector(), \
        dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


def _detections(image: np.ndarray, upsample: int):
    """(dlib rectangle, 5-point shape) per face, left to right."""
    detector, predictor = _models()
    rects = sorted(detector(image, upsample), key=lambda r: (r.left(), r.top()))
    return [(rect, predictor(image, rect)) for rect in rects]


def _box(rect) -> tuple[int, int, int, int]:
    return rect.left(), rect.top(), rect.width(), rect.height()


def landmarks(image: np.ndarray, upsample: int = UPSAMPLE) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """(box, the 5 landmarks [5, 2] in pixels) for every face dlib finds in an RGB uint8 image."""
    return [(_box(rect), np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64))
            for rect, shape in _detections(np.ascontiguousarray(image, dtype=np.uint8), upsample)]


def align_faces(image: np.ndarray, size: int, cropped: bool = False, upsample: int = UPSAMPLE) -> list[Face]:
    """Every face in an RGB uint8 image [H, W, 3] as a chip of size x size (padding 0.25);
    [] if none. cropped=True: the whole image is the one face, resized to the chip."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    if cropped:
        from PIL import Image

        chip = np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS), dtype=np.uint8)
        return [Face((0, 0, width, height), chip)]
    import dlib

    return [Face(_box(rect), np.asarray(dlib.get_face_chip(image, shape, size=size, padding=PADDING), dtype=np.uint8))
            for rect, shape in _detections(image, upsample)]


def align_file(path: Path, size: int, cropped: bool = False) -> list[Face]:
    """align_faces on an image file: any format Pillow reads, EXIF orientation applied, grey or
    RGBA made RGB. Raises components.vision.images.ImageReadError (one line naming the file)."""
    from components.vision.images import read_rgb

    return align_faces(np.asarray(read_rgb(Path(path))), size, cropped)
