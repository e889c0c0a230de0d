"""From a probability map to a cutout: the alpha channel, clean edges, new backgrounds, compositing.

Pure NumPy and OpenCV, no model: results.py, video.py, the notebook and the export checks
use these on what ``inference.Predictor`` returns. Arrays are uint8 RGB (height, width, 3)
photos, (height, width) uint8 alpha maps and (size, size) float32 probability maps.

Clean edges: a pixel of the soft edge is a mix of the person and the old background,
photo = F * alpha + B * (1 - alpha). Keeping the photo's colour there and laying it on a
new background leaves a fringe of the old one; ``estimate_foreground`` recovers F so that
F * alpha + new * (1 - alpha) shows none.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib.colors import to_rgb

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
    alpha *= 255.0  # in place: the same values as np.clip(alpha * 255 + 0.5, 0, 255), in fewer passes
    alpha += 0.5
    return np.clip(alpha, 0, 255, out=alpha).astype(np.uint8)


# The guided filter (He, Sun and Tang, "Guided Image Filtering", TPAMI 2013, in the fast form of
# He and Sun 2015: coefficients on a small grid, applied at full size). The probabilities come
# from a small squashed photo, so upsampled to a large one every edge is a ramp several photo
# pixels wide; the filter makes the alpha a local linear function of the photo's colours,
# alpha = a . RGB + b, fitted in windows of GUIDE_RADIUS model pixels, so that the edge follows
# the photo's own edges at the photo's full size. The grid is the photo as the model saw it
# (squashed to its input size), so a window is the same part of the photo for both, and the
# export runs it with the same resizing (serving.py). GUIDE_EPS keeps the fit from following
# texture where the photo's colours barely vary (larger: smoother). Chosen on the validation
# photos of every source, scored at full size (MODEL.md).
GUIDE_RADIUS = 5
GUIDE_EPS = 1e-4
# The filtered alpha is stretched so that these levels become 0 and 1: a person's inside at 0.95
# is opaque and a background at 0.05 transparent, and only the edge stays soft (the 0.5 level,
# the mask's outline, does not move). Linear before the clip, so it is folded into a and b.
GUIDE_LEVELS = (0.1, 0.9)
# Full-size rows guided_alpha forms at a time (its float temporaries of one band fit in the cache).
GUIDE_BAND_ROWS = 16


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    """The mean over a (2 radius + 1)-square window, the border mirrored without repeating the edge
    pixel (cv2.BORDER_REFLECT_101: TensorFlow's, LiteRT's and ONNX's "reflect" padding, for the export)."""
    return cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT_101)


def guided_coefficients(guide: np.ndarray, prob: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The guided filter's coefficients, window-averaged: a (n, n, 3) and b (n, n), with q = a . guide + b.

    Args:
        guide: (n, n, 3) float32 RGB in [0, 1].
        prob: (n, n) float32, the map to filter.
        radius: window radius in grid pixels.
        eps: the regularisation of the fit.
    """
    mean_i, mean_p = _box(guide, radius), _box(prob, radius)
    cov = _box(guide * prob[..., None], radius) - mean_i * mean_p[..., None]
    channels = [guide[..., k] for k in range(3)]
    means = [mean_i[..., k] for k in range(3)]

    def var(j, k):
        return _box(channels[j] * channels[k], radius) - means[j] * means[k] + (eps if j == k else 0.0)

    rr, rg, rb, gg, gb, bb = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    # The 3x3 covariance inverted per pixel by cofactors (symmetric): inverse = cofactors / det.
    c_rr, c_rg, c_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    c_gg, c_gb, c_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * c_rr + rg * c_rg + rb * c_rb
    c0, c1, c2 = cov[..., 0], cov[..., 1], cov[..., 2]
    a = (
        np.dstack(
            [c_rr * c0 + c_rg * c1 + c_rb * c2, c_rg * c0 + c_gg * c1 + c_gb * c2, c_rb * c0 + c_gb * c1 + c_bb * c2]
        )
        / det[..., None]
    )
    b = mean_p - (a * mean_i).sum(axis=-1)
    return _box(a, radius), _box(b, radius)


def guided_alpha(
    photo: np.ndarray, prob: np.ndarray, hard: bool = False, squashed: np.ndarray | None = None
) -> np.ndarray:
    """(size, size) probabilities -> (height, width) uint8 alpha whose edges follow the photo's (see GUIDE_RADIUS).

    Args:
        photo: (height, width, 3) uint8 RGB, the guide.
        prob: (size, size) probabilities of the photo squashed to size x size.
        hard: threshold the filtered map at one half (alpha 0 or 255).
        squashed: ``images.squash(photo, size)``, if the caller has it already.
    """
    size = prob.shape[0]
    squashed = images.squash(photo, size) if squashed is None else squashed
    guide = squashed.astype(np.float32) / 255.0
    a, b = guided_coefficients(guide, prob.astype(np.float32), GUIDE_RADIUS, GUIDE_EPS)
    low, high = GUIDE_LEVELS
    a, b = a / (high - low), (b - low) / (high - low)
    height, width = photo.shape[:2]
    # 255 q = (a . RGB) + 255 b at full size: the coefficients upsampled as alpha_map upsamples.
    a = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(b * 255.0, (width, height), interpolation=cv2.INTER_LINEAR)
    ones = np.ones((1, 3), np.float32)
    alpha = np.empty((height, width), np.uint8)
    # Band by band, so that the products and their sums stay in the cache (the same values as at once).
    for top in range(0, height, GUIDE_BAND_ROWS):
        rows = slice(top, top + GUIDE_BAND_ROWS)
        q = cv2.transform(cv2.multiply(a[rows], photo[rows], dtype=cv2.CV_32F), ones)
        if hard:
            alpha[rows] = np.where(q + b[rows] >= 127.5, 255, 0)
        else:
            cv2.add(q, b[rows], dst=alpha[rows], dtype=cv2.CV_8U)  # rounds and saturates to 0..255
    return alpha


def person_alpha(
    photo: np.ndarray, prob: np.ndarray, hard: bool = False, guided: bool = True, squashed: np.ndarray | None = None
) -> np.ndarray:
    """The alpha results.py cuts a photo out with: ``guided_alpha``, or with ``guided`` False ``alpha_map``.

    ``squashed``: the photo as the model saw it, if the caller has it (else squashed here).
    """
    if guided:
        return guided_alpha(photo, prob, hard, squashed)
    return alpha_map(prob, *photo.shape[:2], hard)


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


# Blur fusion (estimate_foreground). The pixels it changes: below SOFT_RANGE a pixel hardly
# shows and above it the photo is already nearly the foreground, so keeping the photo's colour
# there is off by at most about 1% of the contrast with the old background. The sizes of its
# two boxes, in widths of the soft edge: the paper's fixed sizes suit the thin soft edges of
# hand-made mattes, while an upsampled alpha's edge widens with the photo and narrows with a
# sharper model, so the boxes follow the edge. The means run on reduced grids of these longer
# sides: the first pass's large boxes lose nothing on a coarse grid, and the second pass's
# small ones, like an alpha upsampled from a 128x128 output (several grid pixels per model
# pixel), are still resolved on a grid of a quarter of full HD's width.
SOFT_RANGE = (3, 252)
BOXES_IN_EDGE_WIDTHS = (3.0, 0.5)
COARSE_SIDE, FINE_SIDE = 240, 480


def soft_edge_width(alpha: np.ndarray, soft_pixels: int, step: int = 4) -> float:
    """The mean width in pixels of an alpha map's soft edge: its soft pixels per pixel of outline.

    The outline's length is counted as the crossings of alpha 128 along every ``step``-th
    row and column, times ``step``.
    """
    rows, cols = alpha[::step] >= 128, alpha[:, ::step] >= 128
    crossings = np.count_nonzero(rows[:, 1:] != rows[:, :-1]) + np.count_nonzero(cols[1:] != cols[:-1])
    return min(soft_pixels / max(1, crossings * step), max(alpha.shape) / 4)


def _odd(size: float) -> int:
    """A box size: odd, so that the box is centred on its pixel, and at least 1."""
    return max(1, round(size)) | 1


def _local_means(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Box means of the foreground weighted by alpha and of the background weighted by 1 - alpha.

    ``alpha`` is (h, w, 3), the alpha in each channel: NumPy is several times faster on arrays
    of one shape than broadcasting one channel over three.
    """
    mean_a = cv2.blur(alpha, (box, box))
    mean_f = cv2.blur(fg * alpha, (box, box)) / (mean_a + 1e-5)
    mean_b = cv2.blur(bg * (1 - alpha), (box, box)) / (1 - mean_a + 1e-5)
    return mean_f, mean_b


def _fused_means(small: np.ndarray, full_width: int, boxes: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Blur fusion's two passes on the fine grid: the second pass's means as F = 255 mean_f and D = 255 (mean_b - mean_f).

    Args:
        small: the RGBA cutout (the photo and its alpha) shrunk to the fine grid, uint8.
        full_width: the photo's width (the box sizes are in its pixels).
        boxes: the two box sizes in full-size pixels.

    Returns:
        F and D, (fine height, fine width, 4) float32 (the fourth channel unused: OpenCV's
        remap is several times faster on 4 channels than on 3).
    """
    # Split as uint8 and by OpenCV (one fast pass each), then made floats: the alpha in each channel.
    image = cv2.cvtColor(small, cv2.COLOR_RGBA2RGB).astype(np.float32) / 255.0
    a3 = cv2.cvtColor(cv2.extractChannel(small, 3).astype(np.float32) / 255.0, cv2.COLOR_GRAY2RGB)
    fine_size = a3.shape[1::-1]
    coarse_image, coarse_a = images.thumbnail(image, COARSE_SIDE), images.thumbnail(a3, COARSE_SIDE)
    mean_f, mean_b = _local_means(coarse_a, coarse_image, coarse_image, _odd(boxes[0] * coarse_a.shape[1] / full_width))
    mean_f, mean_b = cv2.resize(mean_f, fine_size), cv2.resize(mean_b, fine_size)
    first = np.clip(mean_f * (1 - a3 * a3) + a3 * (image - (1 - a3) * mean_b), 0.0, 1.0)
    mean_f, mean_b = _local_means(a3, first, mean_b, _odd(boxes[1] * a3.shape[1] / full_width))
    f = cv2.cvtColor(mean_f * 255.0, cv2.COLOR_RGB2RGBA)
    d = cv2.cvtColor((mean_b - mean_f) * 255.0, cv2.COLOR_RGB2RGBA)
    return f, d


# The soft pixels' grid coordinates go to cv2.remap as an image of this many columns (its sides must stay below 32767).
_REMAP_COLUMNS = 1024
_REMAP_SIDE = 32767  # SHRT_MAX: cv2.remap's limit on each side of the coordinates' image


def _upsampled_at(grids: tuple[np.ndarray, ...], index: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    """Each (h, w, 4) float32 grid upsampled to (height, width) as cv2.resize's bilinear does, read at flat ``index`` only.

    cv2.remap reads the grids at the pixels' centres mapped as cv2.resize maps them (the border
    replicated, as cv2.resize clamps), without a full-size image of each: (n, 4) float32 each.
    """
    n = len(index)
    # Wider rows once there are more than 1024 x 32766 soft pixels (a 48-megapixel photo can have them).
    columns = max(_REMAP_COLUMNS, -(-n // (_REMAP_SIDE - 1)))
    rows = -(-n // columns)
    coords = np.zeros((rows * columns, 2), np.float32)
    y = index // width
    gh, gw = grids[0].shape[:2]
    sx, sy = gw / width, gh / height
    np.multiply(index - y * width, np.float32(sx), out=coords[:n, 0], casting="unsafe")
    np.multiply(y, np.float32(sy), out=coords[:n, 1], casting="unsafe")
    coords[:n] += np.array([0.5 * sx - 0.5, 0.5 * sy - 0.5], np.float32)
    coords = coords.reshape(rows, columns, 2)
    return [
        cv2.remap(g, coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 4)[:n] for g in grids
    ]


def _soft_index(alpha: np.ndarray) -> np.ndarray:
    """The flat indices of the pixels whose alpha is in SOFT_RANGE, in order."""
    soft = cv2.inRange(alpha, *SOFT_RANGE)
    return np.flatnonzero(cv2.threshold(soft, 0, 1, cv2.THRESH_BINARY)[1].view(bool))


def clean_edges(rgba: np.ndarray, alpha: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """``estimate_foreground`` on an RGBA cutout, in place: its colours replaced at the soft pixels.

    Args:
        rgba: (height, width, 4) uint8, the photo and ``alpha``; changed in place.
        alpha: (height, width) uint8, its alpha channel (contiguous).
        index: ``_soft_index(alpha)``, if the caller has it.

    Returns:
        ``rgba``.
    """
    index = _soft_index(alpha) if index is None else index
    if len(index) == 0:
        return rgba
    height, width = alpha.shape
    boxes = [k * soft_edge_width(alpha, len(index)) for k in BOXES_IN_EDGE_WIDTHS]
    f, d = _upsampled_at(_fused_means(images.thumbnail(rgba, FINE_SIDE), width, boxes), index, height, width)
    # One 32-bit word per RGBA pixel: a gather and a scatter of words, where RGB rows take several passes.
    words = rgba.view(np.uint32).reshape(-1)
    pixels = np.take(words, index)
    channels = pixels.view(np.uint8).reshape(-1, 4)
    # The alpha in each of the four bytes of a word, as floats: arrays of one shape (see _local_means).
    soft = ((pixels >> 24) * np.uint32(0x01010101)).view(np.uint8).reshape(-1, 4).astype(np.float32)
    soft *= 1 / 255.0
    # F = alpha photo + 255 ((1 - alpha^2) mean_f - alpha (1 - alpha) mean_b) = alpha photo + (1 - alpha) (F - alpha D).
    d *= soft
    np.subtract(f, d, out=f)
    f *= 1 - soft
    estimate = channels * soft
    estimate += f
    estimate += 0.5
    np.clip(estimate, 0, 255, out=estimate)
    channels[:, :3] = estimate[:, :3]  # the alpha stays
    words[index] = pixels
    return rgba


def rgba_of(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(height, width, 4) uint8: an RGB image with ``alpha`` as its fourth channel."""
    rgba = cv2.cvtColor(colour, cv2.COLOR_RGB2RGBA)  # one pass, where np.dstack takes several
    rgba[..., 3] = alpha
    return rgba


def estimate_foreground(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person's own colour where the alpha is soft, so that a new background shows no fringe of the old one.

    Blur fusion (Forte and Pitie, "Approximate Fast Foreground Colour Estimation", ICIP
    2021): F = mean_f + alpha (photo - alpha mean_f - (1 - alpha) mean_b), with mean_f and
    mean_b the box means of the foreground and of the background around each pixel; first
    over large boxes with the photo standing for both layers, then over small ones with
    the first estimates. Only pixels with an alpha in ``SOFT_RANGE`` change, so a hard
    alpha costs one comparison. The box sizes follow the width of the soft edge
    (``BOXES_IN_EDGE_WIDTHS``) and the means run on reduced grids (``COARSE_SIDE``,
    ``FINE_SIDE``): they are smooth, so the second pass's means are read at the soft pixels
    only, upsampled there as cv2.resize's bilinear upsampling would (cv2.remap at the soft
    pixels' coordinates, no full-size image of them), where F = alpha photo + (1 - alpha^2)
    mean_f - alpha (1 - alpha) mean_b is formed with the full-size alpha. The work is done by
    ``clean_edges`` on the RGBA cutout, which ``cutout`` calls directly: it reads and writes
    each soft pixel as one 32-bit word. The same colours as upsampling the means to full size,
    up to float rounding: a few pixels in a million differ by one level (tests/test_results.py).

    Args:
        photo: (height, width, 3) uint8 RGB.
        alpha: (height, width) uint8.

    Returns:
        (height, width, 3) uint8 RGB: the photo with its soft pixels replaced by the estimate.
    """
    index = _soft_index(alpha)
    if len(index) == 0:
        return photo
    return cv2.cvtColor(clean_edges(rgba_of(photo, alpha), alpha, index), cv2.COLOR_RGBA2RGB)


def cutout(
    photo: np.ndarray,
    prob: np.ndarray,
    hard: bool = False,
    background=None,
    refine: bool = True,
    guided: bool = True,
    squashed: np.ndarray | None = None,
) -> np.ndarray:
    """The person cut out of ``photo``: RGBA, or RGB on ``background`` when one is given.

    Args:
        photo: (height, width, 3) uint8 RGB at full resolution.
        prob: (size, size) person probabilities from the model.
        hard: binary alpha (threshold 0.5) instead of soft.
        background: None (transparent), 'blur', an (r, g, b) colour, or an RGB image.
        refine: in the soft edge, the estimated foreground colour (``estimate_foreground``)
            instead of the photo's, which still holds some of the old background.
        guided: the alpha's edges follow the photo's (``guided_alpha``); False: the
            probabilities upsampled (``alpha_map``).
        squashed: the photo as the model saw it, if the caller has it (the guided filter's grid).
    """
    alpha = person_alpha(photo, prob, hard, guided, squashed)
    if background is None:
        rgba = rgba_of(photo, alpha)
        if refine:
            clean_edges(rgba, alpha)
        # A fully transparent pixel becomes (0, 0, 0, 0), as a lossless WebP drops its colour: nothing
        # shows it, and the PNG of a typical cutout is then about half the size and encodes twice as fast.
        return cv2.bitwise_and(rgba, rgba, mask=alpha)
    colour = estimate_foreground(photo, alpha) if refine else photo
    weight = alpha.astype(np.float32) / 255.0
    return cv2.blendLinear(colour, background_image(background, photo), weight, 1.0 - weight)
