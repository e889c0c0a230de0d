"""Reading, squashing and writing photos with OpenCV: the one place that does it.

Used by coco.py (to build the dataset folders) and results.py (to cut people out of any
photo), so that a photo is resized the same way for training and for inference. Arrays are
uint8 RGB, (height, width, 3); masks are uint8 0/1, (height, width).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# What coco.py writes and results.py looks for when it walks a folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """A file that is missing, empty, not an image, or corrupt; the message names it."""


def read_rgb(path: str | Path, apply_exif: bool = True) -> np.ndarray:
    """Reads any common photo as uint8 RGB.

    Grayscale, palette, RGBA (alpha dropped), 16-bit, CMYK JPEG and WebP are converted.

    Args:
        path: the photo.
        apply_exif: rotate as the EXIF orientation says (phones store portraits sideways).
            False for COCO, whose annotations index the stored pixels.

    Returns:
        (height, width, 3) uint8 RGB array.

    Raises:
        ImageReadError: with the file's name and the reason.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)  # np.fromfile: also non-ASCII names on Windows
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    flags = cv2.IMREAD_COLOR if apply_exif else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as e:  # e.g. larger than OpenCV's pixel limit
        raise ImageReadError(f"{path}: cannot decode ({str(e).strip().splitlines()[-1]})") from None
    if image is None:
        raise ImageReadError(f"{path}: not an image in a supported format, or corrupt/truncated")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def squash(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes to (size, size) without keeping the aspect ratio, as the original did.

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    height, width = image.shape[:2]
    shrink = size * size < height * width
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def squash_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resizes a 0/1 mask like ``squash`` resizes its image, and keeps it binary.

    The mask is resized as a coverage fraction with the image's interpolation and then
    thresholded at one half, so it stays aligned with the image (nearest-neighbour
    resizing would shift it by up to half a source pixel).
    """
    coverage = squash(mask.astype(np.float32), size)
    return (coverage >= 0.5).astype(np.uint8)


def encode(image: np.ndarray, ext: str, quality: int = 95) -> bytes:
    """Encodes an RGB/RGBA uint8 array, or a 2-D gray one, as ``ext`` ('.jpg' or '.png')."""
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
        image = cv2.cvtColor(image, code)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as {ext}")
    return buffer.tobytes()


def tmp_name(path: str | Path) -> Path:
    """The hidden temporary name ``write_atomic`` writes before renaming."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to a hidden temporary name beside ``path``, then renames it.

    An interrupted write never leaves a partial file under the final name.
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_tmp(folder: str | Path) -> int:
    """Removes temporary files that an interrupted ``write_atomic`` left; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
