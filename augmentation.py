"""Augmentation (train.py --augment): new views of a training pair, the same geometry for photo and mask.

The original trained on the squashed photos as they are. These widen the training
distribution beyond one framing: upper-body and zoomed crops, other aspect ratios, mirror
images, other lighting and colours, blur and noise, and, given photos without people
(train.py --composite), people laid over other backgrounds from head-and-shoulders to a
small full-body figure, and whole photos zoomed out into a larger frame.

Pure TensorFlow ops on one pair at a time, so they run inside the tf.data pipeline
(data.training_batches); every function takes a stateless seed, so a seed gives the same
view on every run. Images are (h, w, 3) float32 in [0, 1], masks (h, w, 1) float32 in {0, 1}.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# A third of the crops keep the whole photo: trained on crops alone, a network learns the
# crops' scale and misses the people of the whole photos (measured on real photos).
WHOLE = 1 / 3  # probability of no crop
UPPER_BODY = 1 / 3  # probability of a crop from the top of the photo (head and shoulders)
ZOOM = (0.6, 1.0)  # crop side, as a fraction of the photo's, for the other crops
COLOUR = dict(brightness=0.15, contrast=(0.7, 1.3), saturation=(0.6, 1.4), hue=0.05, gamma=0.3)
GAMMA = 0.3  # probability of a gamma of exp(+-COLOUR["gamma"]): darker or lighter mid-tones
BLUR = (0.25, (0.5, 2.0))  # probability of a Gaussian blur, and its sigma range in output pixels
NOISE = (0.25, (0.01, 0.05))  # probability of Gaussian noise, and its standard deviation range
# Compositing: a person framed from head-and-shoulders to a small full-body figure.
FRAMED = 0.5  # probability of a framing that shows the top of the person only (the rest below the frame)
VISIBLE = (0.3, 0.8)  # ... the share of the person's height that shows then
WHOLE_HEIGHT = (0.25, 0.95)  # otherwise the whole person, this share of the frame's height
ZOOM_OUT = 0.15  # share of composites that shrink the whole photo (its own background too) into a larger frame
ZOOM_OUT_SCALE = (0.55, 0.95)  # ... to this share of the frame's side
CUTOUT_SHARE = 0.3  # share of composites whose person is a cutout (when cutouts are given)
BACKGROUND_ZOOM = (0.5, 1.0)  # side of the background crop, as a share of the background photo's
FEATHER = 0.03  # a zoomed-out photo's border blends into the background over this share of the frame


def random_crop_box(seed: tf.Tensor) -> tf.Tensor:
    """A crop [y0, x0, y1, x1] in [0, 1] coordinates, its aspect ratio jittered.

    With probability WHOLE the whole photo; with probability UPPER_BODY a box that starts
    near the top and keeps 35-80% of the height (an upper-body crop of a full-figure
    photo); otherwise each side a random fraction ZOOM of the photo's, anywhere in it.
    """
    u = tf.random.stateless_uniform([5], seed)
    upper = u[0] < UPPER_BODY
    whole = u[0] >= 1.0 - WHOLE
    height = tf.where(upper, 0.35 + 0.45 * u[1], ZOOM[0] + (ZOOM[1] - ZOOM[0]) * u[1])
    width = ZOOM[0] + (ZOOM[1] - ZOOM[0]) * u[2]  # independent: the aspect ratio changes
    y0 = tf.where(upper, 0.1 * u[3], (1.0 - height) * u[3])
    x0 = (1.0 - width) * u[4]
    box = tf.stack([y0, x0, y0 + height, x0 + width])
    return tf.where(whole, tf.constant([0.0, 0.0, 1.0, 1.0]), box)


def crop(both: tf.Tensor, box: tf.Tensor, size: int | None) -> tf.Tensor:
    """The ``box`` of a (h, w, c) image resized to (size, size); size None: to (h, w).

    Sampled at twice the output size and halved (``place``), so that a crop of a larger
    photo (``--crop-from``) shrunk to the input size is as sharp as a photo squashed to it,
    and not aliased.
    """
    return place(both, box, tf.constant([0.0, 0.0, 1.0, 1.0]), size or both.shape[0])


def _uniform(u: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def person_box(mask: tf.Tensor) -> tf.Tensor:
    """[y0, x0, y1, x1] in [0, 1] around the person of a (h, w, 1) mask; the whole frame if it is empty."""
    person = mask[..., 0] >= 0.5
    rows = tf.cast(tf.where(tf.reduce_any(person, axis=1))[:, 0], tf.float32)
    cols = tf.cast(tf.where(tf.reduce_any(person, axis=0))[:, 0], tf.float32)
    height, width = tf.unstack(tf.cast(tf.shape(person), tf.float32))

    def around():
        return tf.stack(
            [tf.reduce_min(rows) / height, tf.reduce_min(cols) / width,
             (tf.reduce_max(rows) + 1) / height, (tf.reduce_max(cols) + 1) / width]
        )  # fmt: skip

    return tf.cond(tf.size(rows) > 0, around, lambda: tf.constant([0.0, 0.0, 1.0, 1.0]))


def place(source: tf.Tensor, box: tf.Tensor, target: tf.Tensor, size: int) -> tf.Tensor:
    """A (size, size, c) frame showing the ``box`` of ``source`` at ``target``, zero outside it.

    Both are [y0, x0, y1, x1] in [0, 1] coordinates (of the source and of the frame). Where
    the source shrinks, the frame is sampled at twice its size and halved, so that it is not
    aliased; image and mask channels go through the same op, so they stay aligned.
    """
    scale = (box[2:] - box[:2]) / (target[2:] - target[:2])
    start = box[:2] - target[:2] * scale
    sides = tf.cast(tf.shape(source)[:2], tf.float32)
    shrink = tf.reduce_max(scale * sides) > 1.25 * size
    # crop_and_resize puts 0 and 1 on the first and last pixels' centres and fills anything
    # beyond them with zeros; a border of one repeated pixel keeps a person who touches the
    # photo's edge whole up to that edge (float rounding would otherwise drop the last row).
    padded = tf.pad(source, [[1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    frame = tf.concat([start, start + scale], axis=0) * tf.tile(sides - 1, [2]) + 1
    frame = (frame / tf.tile(sides + 1, [2]))[None]

    def sampled(times):
        out = tf.image.crop_and_resize(padded[None], frame, [0], [times * size] * 2, extrapolation_value=0.0)
        return (tf.nn.avg_pool2d(out, times, times, "VALID") if times > 1 else out)[0]

    return tf.cond(shrink, lambda: sampled(2), lambda: sampled(1))


def person_target(box: tf.Tensor, u: tf.Tensor, framed_rate: float = FRAMED) -> tf.Tensor:
    """Where a person's box goes in the frame, [y0, x0, y1, x1], from 6 uniform numbers ``u``.

    With probability ``framed_rate`` only the top of the person shows, filling the frame
    from near its top to the bottom edge: VISIBLE of a whole person's height (head and
    shoulders to half-body), or most of a person whom the source photo already cuts off at
    the bottom. Otherwise the whole person, WHOLE_HEIGHT of the frame tall, feet in the
    lower part of the frame (or cut off by its bottom edge, as in the source). The width
    follows the person's aspect ratio, jittered; at most a quarter of it leaves the frame.
    """
    cut_off = box[2] >= 0.98  # the source photo ends at the person's bottom edge
    framed = u[0] < framed_rate
    visible = tf.where(cut_off, 0.7 + 0.3 * u[2], _uniform(u[2], VISIBLE))
    top_framed = 0.02 + 0.28 * u[1]
    whole = _uniform(u[2], WHOLE_HEIGHT)
    bottom = tf.where(cut_off, 1.0, 0.6 + 0.38 * u[3])
    top_whole = tf.where(cut_off, 1.0 - whole, tf.maximum(bottom - whole, 0.02))
    height = tf.where(framed, (1.0 - top_framed) / visible, whole)
    top = tf.where(framed, top_framed, top_whole)
    width = height * (box[3] - box[1]) / (box[2] - box[0]) * tf.exp(0.4 * u[4] - 0.2)
    margin = tf.minimum(0.5, width / 4)
    centre = margin + (1.0 - 2 * margin) * u[5]
    return tf.stack([top, centre - width / 2, top + height, centre + width / 2])


def background_frame(background: tf.Tensor, u: tf.Tensor, size: int) -> tf.Tensor:
    """A random crop of a background photo (BACKGROUND_ZOOM of its sides, aspect jittered, maybe mirrored), size x size."""
    height, width = _uniform(u[0], BACKGROUND_ZOOM), _uniform(u[1], BACKGROUND_ZOOM)
    y0, x0 = (1.0 - height) * u[2], (1.0 - width) * u[3]
    box = tf.stack([y0, x0, y0 + height, x0 + width])
    box = tf.where(u[4] < 0.5, box, tf.stack([y0, x0 + width, y0 + height, x0]))  # x1 < x0 mirrors it
    return tf.image.crop_and_resize(background[None], box[None], [0], [size, size])[0]


def composite(
    image: tf.Tensor,
    mask: tf.Tensor,
    background: tf.Tensor,
    seed: tf.Tensor,
    size: int,
    framed_rate: float = FRAMED,
    zoom_out_rate: float = ZOOM_OUT,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A person laid over another background: (size, size, 3) image and (size, size, 1) mask in {0, 1}.

    With probability ``zoom_out_rate`` the whole photo, its own background included, shrinks to
    ZOOM_OUT_SCALE of the frame at a random place and the new background fills the rest
    (its border feathered); otherwise the masked person alone is placed by
    ``person_target`` (``framed_rate``: how often only its top shows). The new background's
    colours are jittered apart from the person's.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    u = tf.random.stateless_uniform([8], seeds[0])
    v = tf.random.stateless_uniform([5], seeds[1])
    new = background_frame(background, v, size)
    new = tf.image.stateless_random_brightness(new, COLOUR["brightness"], seeds[2])
    new = tf.image.stateless_random_contrast(new, *COLOUR["contrast"], seeds[3])
    both = tf.concat([image, mask], axis=-1)
    zoom_out = u[7] < zoom_out_rate

    def whole_photo():
        side = _uniform(u[0], ZOOM_OUT_SCALE)
        y0, x0 = (1.0 - side) * u[1], (1.0 - side) * u[2]
        target = tf.stack([y0, x0, y0 + side, x0 + side * tf.exp(0.3 * u[3] - 0.15)])
        placed = place(both, tf.constant([0.0, 0.0, 1.0, 1.0]), target, size)
        grid = (tf.range(size, dtype=tf.float32) + 0.5) / size
        ramp_y = tf.clip_by_value(tf.minimum(grid - target[0], target[2] - grid) / FEATHER, 0.0, 1.0)
        ramp_x = tf.clip_by_value(tf.minimum(grid - target[1], target[3] - grid) / FEATHER, 0.0, 1.0)
        weight = (ramp_y[:, None] * ramp_x[None, :])[..., None]
        return placed[..., :3], weight, placed[..., 3:] * tf.cast(weight > 0.5, tf.float32)

    def person_alone():
        box = person_box(mask)
        placed = place(both, box, person_target(box, u, framed_rate), size)
        return placed[..., :3], placed[..., 3:], placed[..., 3:]

    # ``person`` is the source photo resampled (its old background too); ``weight`` keeps the person.
    person, weight, target = tf.cond(zoom_out, whole_photo, person_alone)
    image = person * weight + new * (1.0 - weight)
    return tf.clip_by_value(image, 0.0, 1.0), tf.cast(target >= 0.5, tf.float32)


def photometric(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Colour and lighting jitter (COLOUR), then sometimes a gamma, blur (BLUR) and noise (NOISE), of a [0, 1] image.

    The occasional ones run in ``tf.cond`` branches: computed and discarded they would
    double the cost of the whole augmentation.
    """
    seeds = tf.random.experimental.stateless_split(seed, 6)
    c = COLOUR
    image = tf.image.stateless_random_brightness(image, c["brightness"], seeds[0])
    image = tf.image.stateless_random_contrast(image, *c["contrast"], seeds[1])
    image = tf.clip_by_value(colour_matrix(image, seeds[2]), 0.0, 1.0)
    u = tf.random.stateless_uniform([7], seeds[4])
    gamma = tf.exp(c["gamma"] * (2 * u[1] - 1))
    image = tf.cond(u[0] < GAMMA, lambda: image**gamma, lambda: image)
    sigma = _uniform(u[3], BLUR[1])
    image = tf.cond(u[2] < BLUR[0], lambda: gaussian_blur(image, sigma), lambda: image)
    std = _uniform(u[5], NOISE[1])
    noisy = lambda: image + tf.random.stateless_normal(tf.shape(image), seeds[5]) * std  # noqa: E731
    return tf.clip_by_value(tf.cond(u[4] < NOISE[0], noisy, lambda: image), 0.0, 1.0)


# RGB -> YIQ: luma and two chroma axes; a hue shift is a rotation of the chroma plane.
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)


def colour_matrix(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random saturation (COLOUR range) and hue shift (up to COLOUR["hue"] of a turn) as one 3x3 matrix.

    The chroma of YIQ scaled and rotated: the same kind of change as
    ``tf.image.adjust_saturation`` and ``adjust_hue``, in one matrix product instead of two
    round trips through HSV (a fifth of the cost).
    """
    u = tf.random.stateless_uniform([2], seed)
    saturation = _uniform(u[0], COLOUR["saturation"])
    angle = (2 * u[1] - 1) * COLOUR["hue"] * 2 * 3.141592653589793
    cos, sin = saturation * tf.cos(angle), saturation * tf.sin(angle)
    chroma = tf.stack([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    matrix = np.linalg.inv(YIQ) @ chroma @ YIQ
    return tf.tensordot(image, tf.transpose(matrix), axes=1)


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int = 4) -> tf.Tensor:
    """A (h, w, c) image blurred with a Gaussian of ``sigma`` pixels (separable, edges clamped)."""
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= tf.reduce_sum(kernel)
    channels = image.shape[-1]
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    rows = tf.tile(kernel[:, None, None, None], [1, 1, channels, 1])
    cols = tf.tile(kernel[None, :, None, None], [1, 1, channels, 1])
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "VALID")[0]


def augment(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    size: int | None = None,
    background: tf.Tensor | None = None,
    composite_rate: float = 0.0,
    cutout: tuple[tf.Tensor, tf.Tensor] | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random new view of one pair: a crop or a composite, a flip, photometric jitter.

    The same geometry is applied to the image and its mask, so they stay aligned: the
    crop is resized to the input size (bilinear; the mask is re-thresholded at one half)
    and both are flipped together. Photometric changes touch the image only.

    Args:
        image: (h, w, 3) float32 in [0, 1].
        mask: (h, w, 1) float32 in {0, 1}.
        seed: (2,) int seed; the same seed gives the same result.
        size: the output's height and width; None: the input's.
        background: (hb, wb, 3) float32, a photo without people; with probability
            ``composite_rate`` the pair becomes a ``composite`` over it.
        cutout: an (image, mask) pair of a person cut out; a composite shows it instead of
            this pair's person with probability CUTOUT_SHARE.

    Returns:
        (image, mask) of shapes (size, size, 3) and (size, size, 1), float32 in the same ranges.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    out = size if size is not None else image.shape[0]
    u = tf.random.stateless_uniform([2], seeds[0])

    def cropped():
        both = crop(tf.concat([image, mask], axis=-1), random_crop_box(seeds[1]), size)
        return both[..., :3], both[..., 3:]

    if background is not None and composite_rate > 0:

        def laid():
            if cutout is None:
                return composite(image, mask, background, seeds[2], out)
            # Cutouts are small whole figures on no background: never enlarged to a head-and-shoulders
            # framing, never zoomed out with their empty surround.
            return tf.cond(
                u[1] < CUTOUT_SHARE,
                lambda: composite(*cutout, background, seeds[2], out, framed_rate=0.0, zoom_out_rate=0.0),
                lambda: composite(image, mask, background, seeds[2], out),
            )

        image, mask = tf.cond(u[0] < composite_rate, laid, cropped)
    else:
        image, mask = cropped()
    both = tf.concat([image, mask], axis=-1)
    flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
    both = tf.cond(flip, lambda: tf.reverse(both, axis=[1]), lambda: both)
    image, mask = both[..., :3], tf.cast(both[..., 3:] >= 0.5, tf.float32)
    return photometric(image, seeds[4]), mask
