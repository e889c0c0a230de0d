"""From a probability map to a cutout: the alpha channel, new backgrounds, compositing.

Pure NumPy and OpenCV, no model: results.py, the notebook and the export checks use these
on what ``inference.Predictor`` returns. Arrays are uint8 RGB (height, width, 3) photos
and (size, size) float32 probability maps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import images


def parse_background(value: str | None, base: Path = Path(".")):
    """--background: None, 'blur', an image file, or a colour ('white', '#00ff00', '0,255,0')."""
    if value is None or value == "blur":
        return value
    path = base / value
    if path.suffix.lower() in images.IMAGE_EXTENSIONS:
        if not path.is_file():
            raise ValueError(f"--background {value}: no such image file")
        return images.read_rgb(path)
    if value.count(",") == 2:
        try:
            rgb = tuple(int(v) for v in value.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb):
            return rgb
    from matplotlib.colors import to_rgb

    try:
        return tuple(round(255 * c) for c in to_rgb(value))
    except ValueError:
        raise ValueError(
            f"--background {value}: not a colour ('white', '#00ff00', '0,255,0'), 'blur', or an image file"
        ) from None


def alpha_map(prob: np.ndarray, height: int, width: int, hard: bool = False) -> np.ndarray:
    """(size, size) probabilities -> (height, width) uint8 alpha, upsampled smoothly.

    Bilinear upsampling gives soft edges instead of a staircase of model pixels; ``hard``
    thresholds the smooth map at 0.5 (the original's binary mask, with smooth contours).
    """
    alpha = cv2.resize(prob.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if hard:
        return np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    return np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


def background_image(background, photo: np.ndarray) -> np.ndarray:
    """The replacement background at the photo's size."""
    height, width = photo.shape[:2]
    if isinstance(background, str):  # "blur"
        sigma = max(height, width) / 60
        return cv2.GaussianBlur(photo, (0, 0), sigma)
    if isinstance(background, tuple):
        return np.broadcast_to(np.array(background, np.uint8), photo.shape).copy()
    # Another photo: scale to cover, then centre-crop (keeps its aspect ratio).
    bh, bw = background.shape[:2]
    scale = max(height / bh, width / bw)
    resized = cv2.resize(background, (max(width, round(bw * scale)), max(height, round(bh * scale))))
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top : top + height, left : left + width]


def cutout(photo: np.ndarray, prob: np.ndarray, hard: bool = False, background=None) -> np.ndarray:
    """The person cut out of ``photo``: RGBA, or RGB on ``background`` when one is given.

    Args:
        photo: (height, width, 3) uint8 RGB at full resolution.
        prob: (size, size) person probabilities from the model.
        hard: binary alpha (threshold 0.5) instead of soft.
        background: None (transparent), 'blur', an (r, g, b) colour, or an RGB image.
    """
    height, width = photo.shape[:2]
    alpha = alpha_map(prob, height, width, hard)
    if background is None:
        return np.dstack([photo, alpha])
    weight = alpha.astype(np.float32) / 255.0
    return cv2.blendLinear(photo, background_image(background, photo), weight, 1.0 - weight)
