"""Augmentation (train.py --augment): new views of a training pair, the same geometry for photo and mask.

The original trained on the squashed photos as they are. These widen the training
distribution beyond one framing: upper-body and zoomed crops, other aspect ratios, mirror
images, other lighting and colours, blur and noise, and, given photos without people
(train.py --composite), people laid over other backgrounds from head-and-shoulders to a
small full-body figure, and whole photos zoomed out into a larger frame; with --scenes
(``scene``), composites that look like everyday photos: up to three people at every scale, cut
by any edge of the frame, lit like the background, sometimes moving or out of focus.

Pure TensorFlow ops on one pair at a time, so they run inside the tf.data pipeline
(data.training_batches); every function takes a stateless seed, so a seed gives the same
view on every run. Images are (h, w, 3) float32 in [0, 1], masks (h, w, 1) float32 in {0, 1}.
"""

from __future__ import annotations

import functools
import itertools

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
# Everyday-photo composites (train.py --scenes, ``scene``): the ranges above where not said otherwise.
SCENE_FRAMED = 0.3  # probability that the frame shows only the top of its main person (portrait to half-body)
FIGURE_HEIGHT = (0.15, 0.95)  # otherwise the whole person, this share of the frame's height (log-uniform)
CROWD = (0.5, 0.2)  # probability of a second person in the frame, and of a third
# Probability of a person leaving by the left or right edge, the share of its width that leaves, and the
# least height (a share of the frame's) for it: smaller figures so cut leave a sliver of a few pixels.
SIDE_CUT = (0.25, (0.2, 0.5), 0.3)
BOTTOM_CUT = (0.2, (0.1, 0.4))  # probability of a whole person's legs leaving by the bottom edge, share of its height
FRONT = 0.5  # the main person's lead in the random depth order (drawn in front of the others most often)
# People's width in the frame x their stored aspect ratio (log-uniform, one factor per frame): the photos
# of everyday scenes, landscape and video frames, are squashed into the square input and make people
# thinner, while the training sources (portrait photos squashed) make them wider.
SQUASH = (0.5, 1.15)
HARMONY = (0.2, 0.7)  # a person's mean colour moves this share of the way to the background's (a gain per channel)
DEFOCUS = (0.25, (0.4, 1.2))  # probability of a person slightly out of focus, and the Gaussian's sigma in pixels
MOTION = (0.15, 0.1)  # probability of a moving subject (its layer blurred along a line), and of a moving camera
SUBJECT_BLUR = (0.02, 0.08)  # ... the moving subject's blur length, a share of the frame's side
CAMERA_BLUR = (0.01, 0.04)  # ... the moving camera's
EDGE = 0.02  # a person's box this close to its photo's edge: the photo cuts the person there
PERMUTATIONS = list(itertools.permutations(range(3)))  # the depth orders of a scene's three people


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


def zoomed_out(both: tf.Tensor, u: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A whole (h, w, 4) photo and mask shrunk to ZOOM_OUT_SCALE of a size x size frame, placed by 4 uniform numbers.

    Returns the resampled photo (zero outside it), its weight (1 inside, feathered over FEATHER at
    its border) and its person mask (where the weight is over one half).
    """
    side = _uniform(u[0], ZOOM_OUT_SCALE)
    y0, x0 = (1.0 - side) * u[1], (1.0 - side) * u[2]
    target = tf.stack([y0, x0, y0 + side, x0 + side * tf.exp(0.3 * u[3] - 0.15)])
    placed = place(both, tf.constant([0.0, 0.0, 1.0, 1.0]), target, size)
    grid = (tf.range(size, dtype=tf.float32) + 0.5) / size
    ramp_y = tf.clip_by_value(tf.minimum(grid - target[0], target[2] - grid) / FEATHER, 0.0, 1.0)
    ramp_x = tf.clip_by_value(tf.minimum(grid - target[1], target[3] - grid) / FEATHER, 0.0, 1.0)
    weight = (ramp_y[:, None] * ramp_x[None, :])[..., None]
    return placed[..., :3], weight, placed[..., 3:] * tf.cast(weight > 0.5, tf.float32)


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

    def person_alone():
        box = person_box(mask)
        placed = place(both, box, person_target(box, u, framed_rate), size)
        return placed[..., :3], placed[..., 3:], placed[..., 3:]

    # ``person`` is the source photo resampled (its old background too); ``weight`` keeps the person.
    person, weight, target = tf.cond(zoom_out, lambda: zoomed_out(both, u, size), person_alone)
    image = person * weight + new * (1.0 - weight)
    return tf.clip_by_value(image, 0.0, 1.0), tf.cast(target >= 0.5, tf.float32)


# ---------------------------------------------------------------------------- everyday-photo composites
#
# A scene is built from layers over a background, each a triple of (size, size, c) tensors: its colour
# premultiplied by its opacity (3), its opacity (1), and how much of it is a person (1): a person's
# layer is opaque where it is a person, a zoomed-out photo is opaque all over and a person only where
# its mask is.
Layer = tuple[tf.Tensor, tf.Tensor, tf.Tensor]


def _log_uniform(u: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return bounds[0] * (bounds[1] / bounds[0]) ** u


def scene_target(box: tf.Tensor, u: tf.Tensor, framed_rate, squash) -> tf.Tensor:
    """Where a person's box goes in an everyday frame, [y0, x0, y1, x1], from 9 uniform numbers ``u``.

    With probability ``framed_rate`` only the top of the person shows (as ``person_target``);
    otherwise the whole person is FIGURE_HEIGHT of the frame tall (log-uniform: small figures are
    as common as large ones), feet in the lower half, or legs cut by the bottom edge (BOTTOM_CUT).
    Its width is the box's aspect ratio times ``squash``. With probability SIDE_CUT[0] (if at
    least SIDE_CUT[2] of the frame tall) it leaves the frame by its left or right edge, else at
    most a tenth of it does. An edge where the person's own photo cuts it (the box within EDGE
    of it) stays at or beyond the frame's edge, so no person ends in a straight line inside the
    frame; a person cut on two opposite sides is enlarged to fill the frame that way, and then
    framed to show the top of its head (unless its photo cuts that too).
    """
    touch = tf.stack([box[0] <= EDGE, box[1] <= EDGE, box[2] >= 1 - EDGE, box[3] >= 1 - EDGE])
    framed = u[0] < framed_rate
    visible = tf.where(touch[2], 0.7 + 0.3 * u[2], _uniform(u[2], VISIBLE))
    top_framed = 0.02 + 0.28 * u[1]
    figure = _log_uniform(u[2], FIGURE_HEIGHT)
    legs_cut = u[3] < BOTTOM_CUT[0]
    standing = tf.minimum(tf.maximum(figure + 0.02, 0.55), 1.0)  # the lowest place for the feet
    bottom = tf.where(
        legs_cut | touch[2], 1.0 + tf.where(legs_cut, figure * _uniform(u[4], BOTTOM_CUT[1]), 0.0),
        standing + (1.0 - standing) * u[4],
    )  # fmt: skip
    height = tf.where(framed, (1.0 - top_framed) / visible, figure)
    width = height * (box[3] - box[1]) / (box[2] - box[0]) * squash
    # A person cut by its photo on two opposite sides is at least as large as the frame that way
    # (a figure grows up from its feet, a framed person down from the top of its head).
    scale = tf.maximum(
        tf.where(touch[0] & touch[2], 1.0 / height, 1.0), tf.where(touch[1] & touch[3], 1.0 / width, 1.0)
    )
    scale = tf.maximum(scale, 1.0)
    height, width = height * scale, width * scale
    top = tf.where(framed | (scale > 1.0), top_framed, bottom - height)  # a person so enlarged shows their head
    side = _uniform(u[6], SIDE_CUT[1])
    left = tf.where(u[7] < 0.5, -side * width, 1.0 - (1.0 - side) * width)
    cut = (u[5] < SIDE_CUT[0]) & (height >= SIDE_CUT[2])
    left = tf.where(cut, left, -0.1 * width + (1.0 - 0.8 * width) * u[8])
    top = tf.where(touch[0], tf.minimum(top, 0.0), top)
    top = tf.where(touch[2], tf.maximum(top, 1.0 - height), top)
    left = tf.where(touch[1], tf.minimum(left, 0.0), left)
    left = tf.where(touch[3], tf.maximum(left, 1.0 - width), left)
    return tf.stack([top, left, top + height, left + width])


def person_layer(image: tf.Tensor, mask: tf.Tensor, u: tf.Tensor, size: int, framed_rate, squash) -> Layer:
    """The masked person of a pair placed by ``scene_target``: a layer."""
    box = person_box(mask)
    placed = place(tf.concat([image, mask], axis=-1), box, scene_target(box, u, framed_rate, squash), size)
    alpha = placed[..., 3:]
    return placed[..., :3] * alpha, alpha, alpha


def photo_layer(image: tf.Tensor, mask: tf.Tensor, u: tf.Tensor, size: int) -> Layer:
    """A whole photo zoomed out (``zoomed_out``), its own background too: a layer."""
    photo, weight, person = zoomed_out(tf.concat([image, mask], axis=-1), u, size)
    return photo * weight, weight, person


def harmonise(layer: Layer, background_mean: tf.Tensor, strength: tf.Tensor) -> Layer:
    """A layer's colours scaled per channel so that its mean moves ``strength`` of the way to the background's.

    The same light falls on a person and the scene around them; a pasted person keeps the light
    of another photo, which alone would tell the network where the paste is. A gain per channel
    (in [0.5, 2]) is how a change of light or white balance acts on a photo.
    """
    colour, opacity, share = layer
    mean = tf.reduce_sum(colour, axis=(0, 1)) / (tf.reduce_sum(opacity) + 1e-3)
    gain = tf.clip_by_value((background_mean + 0.03) / (mean + 0.03), 0.5, 2.0) ** strength
    return colour * gain, opacity, share


def _filtered(layer: Layer, blur) -> Layer:
    """A layer through ``blur`` of its channels together, so that colour, opacity and person stay in step."""
    out = blur(tf.concat(layer, axis=-1))
    return out[..., :3], out[..., 3:4], out[..., 4:]


def motion_blur(image: tf.Tensor, length: tf.Tensor, angle: tf.Tensor, taps: int = 24) -> tf.Tensor:
    """A (h, w, c) image averaged along a line of ``length`` pixels at ``angle`` (radians): a moving exposure.

    What a camera records of a subject (or a scene) that moves that far while the shutter is
    open: the mean of ``taps`` copies shifted evenly along the line, each by whole pixels (a
    slice of the image padded by mirroring), so that it costs a copy per tap rather than a
    resampling (a fifth of the time). Copies at most a pixel apart need ``length`` < ``taps``.
    """
    steps = tf.linspace(-0.5, 0.5, taps) * length
    dx = tf.cast(tf.round(steps * tf.cos(angle)), tf.int32)
    dy = tf.cast(tf.round(steps * tf.sin(angle)), tf.int32)
    pad = tf.reduce_max(tf.abs(tf.concat([dx, dy], axis=0)))
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
    size = tf.shape(image)
    total = tf.zeros_like(image)
    for k in range(taps):
        total += tf.slice(padded, tf.stack([pad + dy[k], pad + dx[k], 0]), size)
    return total / taps


def _blurred(both: tf.Tensor, u: tf.Tensor, bounds: tuple[float, float], size: int) -> tf.Tensor:
    return motion_blur(both, _uniform(u[0], bounds) * size, u[1] * np.pi)


def scene(
    image: tf.Tensor,
    mask: tf.Tensor,
    background: tf.Tensor,
    seed: tf.Tensor,
    size: int,
    others: tuple[tf.Tensor, tf.Tensor] | None = None,
    cutouts: tuple[tf.Tensor, tf.Tensor] | None = None,
    zoom_out_rate=ZOOM_OUT,
) -> tuple[tf.Tensor, tf.Tensor]:
    """An everyday-photo composite (train.py --scenes): (size, size, 3) image, (size, size, 1) mask in {0, 1}.

    Up to three people over a background photo (CROWD): the pair's person (or, with
    probability CUTOUT_SHARE, a cutout), then others from ``others`` or the cutouts, each
    placed by ``scene_target`` (close portraits to small figures, cut by any edge of the frame)
    in a random depth order, its colours ``harmonise``-d partway to the background's, and
    sometimes slightly out of focus (DEFOCUS). As in ``composite``, ``zoom_out_rate`` of the
    frames show the pair's whole photo shrunk, its own background too, instead of its person
    alone. Sometimes the main person moves (its layer, colour and opacity, blurred along a line:
    MOTION[0]) or the camera does (the whole frame and mask: MOTION[1]).

    The mask is every pixel where a person covers half or more of the frame: layers compose
    with "over", so a person in front hides the ones behind it, and the person's share
    composes the same way. A motion-blurred person's true alpha is the share of the exposure
    during which it covers a pixel, which is its opacity blurred by the same line; its mask is
    that alpha at one half: where the person is present at least half of the time, which is
    where a careful annotator would draw a blurred person's outline and what a cutout's
    alpha >= 128 is scored against.

    Args:
        image, mask: the pair, (h, w, 3) in [0, 1] and (h, w, 1) in {0, 1}.
        background: (hb, wb, 3) float32 in [0, 1], a photo without people.
        seed: (2,) int seed; the same seed gives the same scene.
        size: the output's height and width.
        others: (images (2, h, w, 3), masks (2, h, w, 1)): the second and third person (e.g. from
            other training pairs); None: the pair's own person again, elsewhere.
        cutouts: (images (3, h, w, 3), masks (3, h, w, 1)) of people cut out (with a margin, at
            their own aspect ratio), each slot's person with probability CUTOUT_SHARE.
        zoom_out_rate: how often the main person comes with its whole photo (``augment`` gives
            ZOOM_OUT x (1 - the source's share): a source composited nearly always, its own
            backgrounds not wanted, is nearly never zoomed out).
    """
    seeds = tf.random.experimental.stateless_split(seed, 10)
    u = tf.random.stateless_uniform([12], seeds[0])
    new = background_frame(background, tf.random.stateless_uniform([5], seeds[1]), size)
    new = tf.image.stateless_random_brightness(new, COLOUR["brightness"], seeds[2])
    new = tf.image.stateless_random_contrast(new, *COLOUR["contrast"], seeds[3])
    new = tf.clip_by_value(new, 0.0, 1.0)
    squash = _log_uniform(u[0], SQUASH)
    people = [(image, mask)]
    people += [(others[0][k], others[1][k]) for k in range(2)] if others is not None else [(image, mask)] * 2
    cutout = [u[1 + k] < CUTOUT_SHARE if cutouts is not None else tf.constant(False) for k in range(3)]
    count = 1 + tf.cast(u[4] < CROWD[0], tf.int32) + tf.cast(u[5] < CROWD[1], tf.int32)
    background_mean = tf.reduce_mean(new, axis=(0, 1))

    def layer(k: int) -> Layer:
        v = tf.random.stateless_uniform([13], seeds[4 + k])
        # Cutouts are whole figures as small as the crop: never enlarged to a head-and-shoulders framing.
        framed = tf.where(cutout[k], 0.0, SCENE_FRAMED if k == 0 else SCENE_FRAMED / 3)

        def placed():
            person = people[k]
            if cutouts is not None:
                person = tf.cond(cutout[k], lambda: (cutouts[0][k], cutouts[1][k]), lambda: people[k])
            return person_layer(*person, v, size, framed, squash)

        if k == 0:  # the pair's whole photo, zoomed out: never a cutout's
            zoom = (v[9] < zoom_out_rate) & ~cutout[0]
            made = tf.cond(zoom, lambda: photo_layer(image, mask, v[1:5], size), placed)
        else:
            made = placed()
        made = harmonise(made, background_mean, _uniform(v[10], HARMONY))
        sigma = _uniform(v[12], DEFOCUS[1])
        return tf.cond(v[11] < DEFOCUS[0], lambda: _filtered(made, lambda x: gaussian_blur(x, sigma, 3)), lambda: made)

    w = tf.random.stateless_uniform([4], seeds[7])
    main = layer(0)
    moving = lambda: _filtered(main, lambda x: _blurred(x, w, SUBJECT_BLUR, size))  # noqa: E731
    layers = [tf.cond(u[6] < MOTION[0], moving, lambda: main), None, None]
    order = tf.argsort(tf.random.stateless_uniform([3], seeds[8]) + tf.constant([FRONT, 0.0, 0.0]))
    permutation = tf.argmax(tf.reduce_all(tf.constant(PERMUTATIONS, tf.int32) == order, axis=1), output_type=tf.int32)

    def compose(back_to_front: tuple[int, ...]) -> tuple[tf.Tensor, tf.Tensor]:
        frame, person = new, tf.zeros([size, size, 1])
        for k in back_to_front:  # "over"; the second and third persons' layers made only if they are there
            if k == 0:
                colour, opacity, share = layers[0]
                frame, person = colour + (1.0 - opacity) * frame, share + (1.0 - opacity) * person
                continue

            def over(k=k, frame=frame, person=person):
                colour, opacity, share = layer(k)
                return colour + (1.0 - opacity) * frame, share + (1.0 - opacity) * person

            frame, person = tf.cond(k < count, over, lambda frame=frame, person=person: (frame, person))
        return frame, person

    frame, person = tf.switch_case(permutation, [functools.partial(compose, p) for p in PERMUTATIONS])
    both = tf.concat([frame, person], axis=-1)
    both = tf.cond(u[7] < MOTION[1], lambda: _blurred(both, w[2:], CAMERA_BLUR, size), lambda: both)
    return tf.clip_by_value(both[..., :3], 0.0, 1.0), tf.cast(both[..., 3:] >= 0.5, tf.float32)


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
    composite_rate: float | tf.Tensor = 0.0,
    cutout: tuple[tf.Tensor, tf.Tensor] | None = None,
    others: tuple[tf.Tensor, tf.Tensor] | None = None,
    scenes: bool = False,
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
            ``composite_rate`` (a number, or a tensor: the pair's source's share) the pair
            becomes a ``composite`` over it (with ``scenes``: a ``scene``).
        cutout: an (image, mask) pair of a person cut out; a composite shows it instead of
            this pair's person with probability CUTOUT_SHARE. With ``scenes``: three of them
            stacked, one for each person of a scene.
        others: with ``scenes``: two more pairs stacked, the second and third person of a scene.

    Returns:
        (image, mask) of shapes (size, size, 3) and (size, size, 1), float32 in the same ranges.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    out = size if size is not None else image.shape[0]
    u = tf.random.stateless_uniform([2], seeds[0])

    def cropped():
        both = crop(tf.concat([image, mask], axis=-1), random_crop_box(seeds[1]), size)
        return both[..., :3], both[..., 3:]

    if background is not None and (tf.is_tensor(composite_rate) or composite_rate > 0):

        def laid():
            if scenes:
                return scene(image, mask, background, seeds[2], out, others, cutout, ZOOM_OUT * (1 - composite_rate))
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
