"""Augmentation: every view keeps photo and mask aligned, and composites cover the framings they promise."""

import numpy as np
import pytest
import tensorflow as tf

import augmentation
import data
import folders
from conftest import write_split


def asymmetric_pair(size=64):
    """A gray image whose two levels are exactly its mask (an L shape: flips show)."""
    mask = np.zeros((size, size, 1), np.float32)
    mask[8:56, 10:22] = 1
    mask[44:56, 10:50] = 1
    image = np.repeat(0.15 + 0.6 * mask, 3, axis=-1)
    return tf.constant(image), tf.constant(mask)


def dark_background(size=80, level=0.05):
    """A photo without people: dark, with a little texture."""
    rng = np.random.default_rng(0)
    return tf.constant(np.clip(level + 0.04 * rng.random((size, size, 3)), 0, 1).astype(np.float32))


def agreement(image, mask):
    """Share of pixels, away from the mask's outline, where 'brighter than the midpoint' is the mask.

    1.0 for a gray person aligned with its mask on a darker ground. The pixels next to the
    outline (and the frame's edge, where it may run just outside) are left out: resampling, blending and blur make them a mix of both levels. A
    shift of the mask against the image by two pixels or more still shows along the outline.
    """
    gray = image.numpy().mean(axis=-1)
    m = mask.numpy()[None] > 0
    if not m.any():  # no person in the view: then no bright person either
        return float(np.mean(gray < np.median(gray) + 0.25))
    bright = gray > (gray[m[0, ..., 0]].mean() + gray[~m[0, ..., 0]].mean()) / 2
    near = tf.nn.max_pool2d(m.astype(np.float32), 3, 1, "SAME") != -tf.nn.max_pool2d(
        -m.astype(np.float32), 3, 1, "SAME"
    )
    keep = ~near.numpy()[0, ..., 0]
    keep[[0, -1]] = keep[:, [0, -1]] = False  # an outline just outside the frame
    return float(np.mean(bright[keep] == m[0, ..., 0][keep]))


def check_view(image, mask, size):
    assert image.shape == (size, size, 3) and mask.shape == (size, size, 1)
    assert image.dtype == tf.float32 and mask.dtype == tf.float32
    assert float(tf.reduce_min(image)) >= 0.0 and float(tf.reduce_max(image)) <= 1.0
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}


def test_augment_keeps_image_and_mask_aligned():
    image, mask = asymmetric_pair()
    changed = flipped = 0
    for i in range(40):
        out_image, out_mask = augmentation.augment(image, mask, tf.constant([i, 7]))
        check_view(out_image, out_mask, 64)
        # Colour jitter, blur and noise keep a gray image's two levels apart: the bright pixels
        # of the augmented image must be the augmented mask.
        assert agreement(out_image, out_mask) >= 0.995, f"seed {i}"
        changed += not np.array_equal(out_mask, mask.numpy())
        # The L's foot points right; mirrored, more of the mask lies left of its bar.
        column_mass = out_mask.numpy()[..., 0].sum(axis=0)
        cols = np.flatnonzero(column_mass)
        if cols.size:
            flipped += column_mass[cols[-1]] > column_mass[cols[0]]
    assert changed >= 25, "augmentation left most masks unchanged"
    assert 8 <= flipped <= 32, f"{flipped} of 40 flipped"


def test_composites_keep_image_and_mask_aligned_and_cover_every_framing():
    """A bright person laid over a dark background: the mask must be where the person shows."""
    image, mask = asymmetric_pair()
    background = dark_background()
    heights, tops, bottoms = [], [], []
    for i in range(60):
        out_image, out_mask = augmentation.composite(image, mask, background, tf.constant([i, 3], tf.int64), 64)
        check_view(out_image, out_mask, 64)
        assert agreement(out_image, out_mask) >= 0.995, f"seed {i}"
        m = out_mask.numpy()[..., 0]
        if not m.any():  # the top of an L is its thin bar, which a framing may leave out
            continue
        rows = np.flatnonzero(m.any(axis=1))
        heights.append((rows[-1] + 1 - rows[0]) / 64)
        tops.append(rows[0] / 64)
        bottoms.append((rows[-1] + 1) / 64)
    heights = np.array(heights)
    assert len(heights) >= 55, "the person left the frame too often"
    # From a small whole figure to a framing cut by the bottom edge (head and shoulders, half-body).
    assert heights.min() < 0.35 and np.mean(np.array(bottoms) >= 0.99) > 0.3
    assert np.mean(heights < 0.6) > 0.15 and np.mean(np.array(tops) < 0.35) > 0.3


def test_a_person_cut_off_by_the_photo_stays_on_the_bottom_edge():
    """A head-and-shoulders portrait (the person ends at the photo's bottom edge) never floats."""
    mask = np.zeros((64, 64, 1), np.float32)
    mask[20:, 16:48] = 1
    image = tf.constant(np.repeat(0.15 + 0.6 * mask, 3, axis=-1))
    for i in range(30):
        out_image, out_mask = augmentation.composite(
            image, tf.constant(mask), dark_background(), tf.constant([i, 5], tf.int64), 64, zoom_out_rate=0.0
        )
        assert out_mask.numpy()[-1, :, 0].any(), f"seed {i}: the portrait's bottom edge is in the frame"


def test_zoomed_out_photos_keep_their_own_background_and_their_person():
    image, mask = asymmetric_pair()
    for i in range(10):
        out_image, out_mask = augmentation.composite(
            image, mask, dark_background(), tf.constant([i, 9], tf.int64), 64, zoom_out_rate=1.0
        )
        area = float(tf.reduce_mean(out_mask))
        assert 0.55**2 * 0.9 * float(tf.reduce_mean(mask)) <= area < float(tf.reduce_mean(mask)), f"seed {i}"
        assert agreement(out_image, out_mask) >= 0.995


def test_crops_from_larger_photos_have_the_same_geometry():
    """--crop-from: the crop of a photo twice as large, shrunk to the input size, is the same crop."""
    image, mask = asymmetric_pair()
    large = [tf.repeat(tf.repeat(t, 2, axis=0), 2, axis=1) for t in (image, mask)]
    for i in range(20):
        small_image, small_mask = augmentation.augment(image, mask, tf.constant([i, 1]))
        out_image, out_mask = augmentation.augment(*large, tf.constant([i, 1]), 64)
        check_view(out_image, out_mask, 64)
        agree = float(np.mean(out_mask.numpy() == small_mask.numpy()))
        assert agree >= 0.97, f"seed {i}: the crops differ on {1 - agree:.1%} of the mask"
        assert agreement(out_image, out_mask) >= 0.995


def test_augment_is_deterministic_per_seed():
    image, mask = asymmetric_pair()
    background = dark_background()
    for extra in ((), (background, 0.5)):
        a = augmentation.augment(image, mask, tf.constant([3, 4]), None, *extra)
        b = augmentation.augment(image, mask, tf.constant([3, 4]), None, *extra)
        c = augmentation.augment(image, mask, tf.constant([5, 4]), None, *extra)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[0], c[0])


def test_crop_boxes_include_upper_body_crops():
    boxes = np.array([augmentation.random_crop_box(tf.constant([i, 0])).numpy() for i in range(400)])
    y0, x0, y1, x1 = boxes.T
    assert (boxes >= 0).all() and (boxes <= 1.0 + 1e-6).all()
    assert ((y1 - y0) >= 0.35 - 1e-6).all() and ((x1 - x0) >= augmentation.ZOOM[0] - 1e-6).all()
    upper = (y0 <= 0.1) & (y1 - y0 <= 0.8)
    whole = (boxes == [0.0, 0.0, 1.0, 1.0]).all(axis=1)
    assert 0.25 <= upper.mean() <= 0.45 and 0.25 <= whole.mean() <= 0.42
    aspect = (x1 - x0) / (y1 - y0)
    assert aspect.min() < 0.8 and aspect.max() > 1.6, "no aspect-ratio jitter"


def test_person_box():
    mask = np.zeros((10, 20, 1), np.float32)
    mask[2:5, 4:9] = 1
    np.testing.assert_allclose(augmentation.person_box(tf.constant(mask)), [0.2, 0.2, 0.5, 0.45])
    np.testing.assert_allclose(augmentation.person_box(tf.zeros([4, 4, 1])), [0, 0, 1, 1])


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_gaussian_blur_keeps_the_mean_and_smooths(sigma):
    image = tf.constant(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
    blurred = augmentation.gaussian_blur(image, tf.constant(sigma))
    assert blurred.shape == image.shape
    assert float(tf.reduce_mean(blurred)) == pytest.approx(float(tf.reduce_mean(image)), abs=1e-3)
    assert float(tf.math.reduce_std(blurred)) < float(tf.math.reduce_std(image))


def test_colour_matrix_keeps_grays_gray():
    gray = tf.fill([4, 4, 3], 0.4)
    out = augmentation.colour_matrix(gray, tf.constant([1, 2]))
    np.testing.assert_allclose(out, gray, atol=1e-5)  # saturation and hue act on colour only


# ---------------------------------------------------------------------------- the training stream


def level_split(root, level, n=4, size=32):
    """A split whose photos are all one gray level, so a batch tells which source each photo came from."""
    write_split(root, n=n, size=size)
    for path in (root / "images").iterdir():
        path.write_bytes(data.images.encode(np.full((size, size, 3), level, np.uint8), ".png"))
    return root


def test_sources_are_drawn_by_weight(tmp_path):
    dark = data.load_split(level_split(tmp_path / "a", 20), 32)
    bright = data.load_split(level_split(tmp_path / "b", 230, n=2), 32)
    stream = data.training_batches([dark, bright], batch_size=50, seed=1, weights=[3, 1])
    x, _ = next(iter(stream))
    share = float(np.mean(x.numpy().mean(axis=(1, 2, 3)) > 0.5))
    assert 0.13 <= share <= 0.37, share  # a quarter bright
    by_size = data.training_batches([dark, bright], batch_size=60, seed=1)  # 4 and 2 photos: a third bright
    x, _ = next(iter(by_size))
    assert 0.2 <= float(np.mean(x.numpy().mean(axis=(1, 2, 3)) > 0.5)) <= 0.47


def test_composites_and_cutouts_in_the_stream(tmp_path):
    photos = data.load_split(write_split(tmp_path / "p", n=4, size=32), 32)
    cutouts = data.load_split(write_split(tmp_path / "c", n=2, size=32, seed=5), 32)
    backgrounds_dir = tmp_path / "bg"
    backgrounds_dir.mkdir()
    for i in range(3):
        (backgrounds_dir / f"b{i}.jpg").write_bytes(data.images.encode(np.full((40, 60, 3), 10 * i, np.uint8), ".jpg"))
    (backgrounds_dir / "broken.jpg").write_bytes(b"not a jpeg")
    backgrounds = data.load_backgrounds(backgrounds_dir, 32)
    assert int(backgrounds.cardinality()) == 3  # the broken one skipped
    plain = data.training_batches([photos], 16, seed=2, augmented=True)
    mixed = data.training_batches(
        [photos], 16, seed=2, augmented=True, backgrounds=backgrounds, composite_rate=1.0, cutouts=cutouts
    )
    a, b = next(iter(plain)), next(iter(mixed))
    assert a[0].shape == b[0].shape == (16, 32, 32, 3) and set(np.unique(b[1])) <= {0.0, 1.0}
    assert not np.array_equal(a[1], b[1])
    with pytest.raises(folders.DatasetError, match="no such folder"):
        data.load_backgrounds(tmp_path / "nowhere", 32)
