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


# ---------------------------------------------------------------------------- everyday-photo scenes (--scenes)

PERSON, GROUND = np.array([0.9, 0.2, 0.1], np.float32), np.array([0.1, 0.3, 0.8], np.float32)


def flat_person(mask):
    """A photo entirely of one colour (the person's, and its own background's: only the mask tells them apart)."""
    mask = np.asarray(mask, np.float32)
    return tf.constant(np.broadcast_to(PERSON, mask.shape[:2] + (3,)).copy()), tf.constant(mask)


def box_mask(y0, y1, x0, x1, size=64):
    mask = np.zeros((size, size, 1), np.float32)
    mask[y0:y1, x0:x1] = 1
    return mask


def scene_maker(size=64, **kwargs):
    """(seed, pair=asymmetric_pair()) -> augmentation.scene over a dark background, traced once as tf.data runs it."""
    traced = tf.function(lambda seed, image, mask: augmentation.scene(image, mask, background, seed, size, **kwargs))
    background = dark_background()
    return lambda seed, pair=None: traced(tf.constant([seed, 11], tf.int64), *(pair or asymmetric_pair()))


def person_rows_and_cols(mask):
    m = mask.numpy()[..., 0] > 0
    return np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))


def test_scenes_keep_image_and_mask_aligned():
    others = tuple(tf.stack(t) for t in zip(asymmetric_pair(), asymmetric_pair(), strict=True))
    scene = scene_maker(others=others)
    for i in range(30):
        image, mask = scene(i)
        check_view(image, mask, 64)
        assert agreement(image, mask) >= 0.98, f"seed {i}"


def test_the_mask_is_exactly_where_people_cover_half_the_pixel_blurred_or_not(monkeypatch):
    """One colour for every person, another for the ground: each pixel tells how much person it shows.

    With the light matching off (every person keeps the same colour) and the ground's brightness
    fixed, a pixel is a * PERSON + (1 - a) * GROUND, whatever the scene did (several people, edges,
    focus, a moving person or camera): the mask must be a >= 1/2.
    """
    monkeypatch.setattr(augmentation, "HARMONY", (0.0, 0.0))
    monkeypatch.setattr(augmentation, "MOTION", (0.4, 0.4))
    monkeypatch.setattr(augmentation, "COLOUR", {**augmentation.COLOUR, "brightness": 0.0})
    others = tuple(
        tf.stack(t)
        for t in zip(flat_person(box_mask(4, 60, 20, 30)), flat_person(box_mask(30, 64, 5, 60)), strict=True)
    )
    cutouts = tuple(tf.stack(t) for t in zip(*[flat_person(box_mask(10, 54, 24, 40))] * 3, strict=True))
    ground = tf.constant(np.broadcast_to(GROUND, (70, 90, 3)).copy())
    pair = flat_person(asymmetric_pair()[1])
    checked = 0
    for i in range(60):
        image, mask = augmentation.scene(
            *pair, ground, tf.constant([i, 2], tf.int64), 64, others, cutouts, zoom_out_rate=0.0
        )
        a = (image.numpy() - GROUND) @ (PERSON - GROUND) / np.sum((PERSON - GROUND) ** 2)
        clear = np.abs(a - 0.5) > 0.02  # rounding decides the pixels at one half
        np.testing.assert_array_equal(mask.numpy()[..., 0][clear], (a >= 0.5)[clear], err_msg=f"seed {i}")
        assert clear.mean() > 0.97
        checked += mask.numpy().any()
    assert checked >= 50


def test_several_people_cover_more_than_one(monkeypatch):
    others = tuple(tf.stack(t) for t in zip(asymmetric_pair(), asymmetric_pair(), strict=True))
    areas = {}
    for crowd in ((0.0, 0.0), (1.0, 1.0)):
        monkeypatch.setattr(augmentation, "CROWD", crowd)
        scene = scene_maker(others=others, zoom_out_rate=0.0)
        areas[crowd] = [scene(i)[1].numpy() for i in range(20)]
    for i, (one, three) in enumerate(zip(areas[(0.0, 0.0)], areas[(1.0, 1.0)], strict=True)):
        assert (three >= one).all(), f"seed {i}: the main person is where it was, the others added"
    larger = [three.sum() > one.sum() for one, three in zip(areas[(0.0, 0.0)], areas[(1.0, 1.0)], strict=True)]
    assert np.mean(larger) >= 0.8


def test_scenes_show_people_at_every_scale_and_cut_by_every_edge(monkeypatch):
    monkeypatch.setattr(augmentation, "CROWD", (0.0, 0.0))
    monkeypatch.setattr(augmentation, "MOTION", (0.0, 0.0))
    pair = (None, tf.constant(box_mask(8, 56, 26, 38)))  # a whole standing figure, its photo cuts it nowhere
    pair = (tf.constant(np.repeat(0.15 + 0.6 * pair[1].numpy(), 3, axis=-1)), pair[1])
    heights, left, right, bottom = [], 0, 0, 0
    scene = scene_maker(size=96, zoom_out_rate=0.0)
    for i in range(200):
        image, mask = scene(i, pair)
        rows, cols = person_rows_and_cols(mask)
        if not rows.size:
            continue
        heights.append((rows[-1] + 1 - rows[0]) / 96)
        left += cols[0] == 0
        right += cols[-1] == 95
        bottom += rows[-1] == 95
        if cols[0] == 0 or cols[-1] == 95:
            assert agreement(image, mask) >= 0.98, f"seed {i}: a person cut by the edge stays aligned"
    heights = np.array(heights)
    assert len(heights) >= 190
    assert 0.08 <= heights.min() < 0.2 and np.mean(heights < 0.3) > 0.2, "small figures"
    assert heights.max() > 0.95 and np.mean(heights > 0.7) > 0.2, "close portraits"
    assert min(left, right) >= 15 and bottom >= 60, (left, right, bottom)


def test_an_edge_where_the_photo_cuts_the_person_stays_at_the_frames_edge(monkeypatch):
    """A person cut by their own photo never ends in a straight line inside the frame."""
    monkeypatch.setattr(augmentation, "CROWD", (0.0, 0.0))
    scene = scene_maker(zoom_out_rate=0.0)
    cases = {
        "left": (8, 56, 0, 20),
        "right": (8, 56, 40, 64),
        "bottom": (20, 64, 16, 48),
        "top bottom": (0, 64, 10, 50),
    }
    for edges, box in cases.items():
        mask = box_mask(*box)
        pair = (tf.constant(np.repeat(0.15 + 0.6 * mask, 3, axis=-1)), tf.constant(mask))
        for i in range(20):
            image, out = scene(i, pair)
            rows, cols = person_rows_and_cols(out)
            assert rows.size, f"{edges}, seed {i}"
            on_edge = {"left": cols[0] == 0, "right": cols[-1] == 63, "top": rows[0] == 0, "bottom": rows[-1] == 63}
            assert all(on_edge[e] for e in edges.split()), f"{edges}, seed {i}: {on_edge}"
            assert agreement(image, out) >= 0.98, f"{edges}, seed {i}"


def test_scene_targets_keep_the_photos_cuts_beyond_the_frame():
    rng = np.random.default_rng(0)
    eps = 1e-6  # float rounding: a millionth of the frame
    target = tf.function(augmentation.scene_target)
    for _ in range(200):
        u = tf.constant(rng.random(9), tf.float32)
        y0, x0, y1, x1 = target(tf.constant([0.0, 0.0, 1.0, 0.4]), u, 0.3, 1.0).numpy()
        assert y0 <= eps and x0 <= eps and y1 >= 1 - eps, "cut by its photo at the top, left and bottom"
        y0, x0, y1, x1 = target(tf.constant([0.3, 0.0, 0.9, 1.0]), u, 0.3, 0.7).numpy()
        assert x0 <= eps and x1 >= 1 - eps and 0.02 - eps <= y0 <= 0.3 + eps, "enlarged to the width: the head shows"
        y0, x0, y1, x1 = target(tf.constant([0.0, 0.0, 1.0, 1.0]), u, 0.3, 0.6).numpy()
        assert max(y0, x0) <= eps and min(y1, x1) >= 1 - eps, "cut on all four sides: fills the frame"
        y0, x0, y1, x1 = target(tf.constant([0.1, 0.3, 0.9, 0.5]), u, 0.0, 1.0).numpy()
        assert 0.15 * 0.999 <= y1 - y0 <= 0.95 * 1.001, "a whole figure, 15-95% of the frame"
        assert np.isclose((x1 - x0) / (y1 - y0), 0.25), "the box's aspect ratio times the squash"
        if y1 - y0 < augmentation.SIDE_CUT[2]:  # a small figure leaves at most a tenth of itself out, not a sliver in
            assert x0 >= -0.1 * (x1 - x0) - eps and x1 <= 1 + 0.1 * (x1 - x0) + eps


def test_scenes_are_repeatable_per_seed():
    others = tuple(tf.stack(t) for t in zip(asymmetric_pair(), asymmetric_pair(), strict=True))
    a, b, c = (
        augmentation.scene(*asymmetric_pair(), dark_background(), tf.constant([s, 0]), 64, others) for s in (3, 3, 4)
    )
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    image, mask = asymmetric_pair()
    views = [
        augmentation.augment(image, mask, tf.constant([s, 1]), None, dark_background(), 1.0, None, others, True)
        for s in (7, 7, 8)
    ]
    assert np.array_equal(views[0][0], views[1][0]) and np.array_equal(views[0][1], views[1][1])
    assert not np.array_equal(views[0][0], views[2][0])


def test_harmonise_moves_a_persons_colour_toward_the_background():
    def opaque(colour):
        return tf.ones([8, 8, 3]) * colour, tf.ones([8, 8, 1]), tf.ones([8, 8, 1])

    def harmonised(layer, background_mean, strength):
        return augmentation.harmonise(layer, tf.constant(background_mean), tf.constant(strength))

    layer, background_mean = opaque([0.5, 0.4, 0.35]), [0.3, 0.4, 0.6]
    np.testing.assert_allclose(harmonised(layer, background_mean, 0.0)[0], layer[0])
    distance = {
        s: np.abs(harmonised(layer, background_mean, s)[0].numpy()[0, 0] - background_mean) for s in (0.0, 0.5, 1.0)
    }
    assert (distance[1.0] < 0.02).all(), "all the way: the background's mean (but for a small offset)"
    red_blue = [0, 2]  # green is the background's already
    assert (distance[1.0][red_blue] < distance[0.5][red_blue]).all()
    assert (distance[0.5][red_blue] < distance[0.0][red_blue]).all()
    assert harmonised(layer, background_mean, 0.5)[1:] == layer[1:]  # the opacity and the person untouched
    # A dark person on a bright ground is lit at most twice as bright, as a change of light would.
    dark = harmonised(opaque([0.05, 0.05, 0.05]), [0.9, 0.9, 0.9], 1.0)[0]
    np.testing.assert_allclose(dark.numpy()[0, 0], 0.1, atol=1e-6)


@pytest.mark.parametrize("angle, axis", [(0.0, 1), (np.pi / 2, 0)])
@pytest.mark.parametrize("length", [3.0, 10.0])
def test_motion_blur_spreads_a_point_along_its_line(angle, axis, length):
    image = np.zeros((31, 31, 2), np.float32)
    image[15, 15] = 1
    out = augmentation.motion_blur(tf.constant(image), tf.constant(length), tf.constant(angle)).numpy()[..., 0]
    assert out.sum() == pytest.approx(1.0, abs=1e-5)  # nothing lost
    assert np.flatnonzero(out.sum(axis=axis) > 1e-6).tolist() == [15], "nothing across the line"
    along = out.sum(axis=1 - axis)
    offsets = np.arange(31) - 15
    assert (along * offsets).sum() == pytest.approx(0.0, abs=0.05), "centred on the point"
    # A box of the length (variance length^2 / 12), in whole pixels (at most length + 1 of them).
    assert length**2 / 12 - 0.25 <= (along * offsets**2).sum() <= ((length + 1) ** 2 - 1) / 12
    assert along[np.abs(offsets) > length / 2 + 0.5].sum() == 0


def test_each_source_is_composited_by_its_own_share(tmp_path):
    """A red source with share 0 is never laid over the green backgrounds, a blue one with share 1 always."""

    def colour_split(root, colour):
        write_split(root, n=4, size=32)
        for path in (root / "images").iterdir():
            path.write_bytes(data.images.encode(np.full((32, 32, 3), colour, np.uint8), ".png"))
        return data.load_split(root, 32)

    def dominant(x, channel):  # share of each view's pixels where this channel leads the others clearly
        others = np.delete(x, channel, axis=-1).max(axis=-1)
        return (x[..., channel] - others > 0.15).mean(axis=(1, 2))

    red, blue = colour_split(tmp_path / "a", (200, 20, 20)), colour_split(tmp_path / "b", (40, 40, 220))
    backgrounds_dir = tmp_path / "bg"
    backgrounds_dir.mkdir()
    (backgrounds_dir / "green.png").write_bytes(data.images.encode(np.full((40, 40, 3), (0, 200, 0), np.uint8), ".png"))
    backgrounds = data.load_backgrounds(backgrounds_dir, 32)
    for scenes in (False, True):
        stream = data.training_batches(
            [red, blue], 64, seed=4, weights=[1, 1], augmented=True, backgrounds=backgrounds,
            composite_rate=[0.0, 1.0], scenes=scenes,
        )  # fmt: skip
        x = next(iter(stream))[0].numpy()
        has_red, has_green = dominant(x, 0) > 0.02, dominant(x, 1) > 0.02
        assert has_red.sum() >= 15 and (~has_red).sum() >= 15, f"scenes={scenes}: both sources drawn"
        assert not (has_red & has_green).any(), f"scenes={scenes}: the red source laid over a background"
        # The blue source's views: composites, but where a framing fills the frame with its person.
        assert has_green[~has_red].mean() >= 0.8, f"scenes={scenes}"


def test_a_grid_of_the_views_a_recipe_trains_on(tiny_data, tmp_path, capsys):
    from benchmarks import training_views

    backgrounds = tmp_path / "bg" / "nested"
    backgrounds.mkdir(parents=True)
    (backgrounds / "b.png").write_bytes(data.images.encode(np.full((40, 40, 3), (0, 200, 0), np.uint8), ".png"))
    out = tmp_path / "views.png"
    recipe = ["--data-dir", str(tiny_data), "--augment", "--composite", "1", "--backgrounds", str(tmp_path / "bg")]
    argv = ["--out", str(out), "--views", "6", "--columns", "4", "--", *recipe, "--scenes", "--image-size", "64"]
    assert training_views.main(argv) == 0
    sheet = data.images.read_rgb(out)
    assert sheet.shape == (2 * 64 + 2, 4 * 64 + 3 * 2, 3)  # two rows of four, 2-pixel gaps
    outline = np.all(sheet == training_views.OUTLINE, axis=-1)
    assert outline[:64, :64].any() and not outline[66:, 3 * 66 :].any()  # a view's outline; the empty places white
    assert "wrote" in capsys.readouterr().out
    assert training_views.main(argv) == 2  # not overwritten unasked
    assert "exists: give --overwrite" in capsys.readouterr().err
    bad = ["--out", str(tmp_path / "x.png"), "--", *recipe[:-1], str(tmp_path / "none")]
    assert training_views.main(bad) == 2
    assert "no such folder" in capsys.readouterr().err.strip().splitlines()[-1]
