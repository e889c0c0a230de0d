"""The input pipeline and the photo helpers, on folders the tests write."""

import logging

import cv2
import numpy as np
import pytest

import data
import folders
import images
from conftest import write_split


def test_batches_have_the_right_shapes_dtypes_and_values(tmp_path):
    split = write_split(tmp_path / "train", n=5)
    ds = data.make_dataset(split, image_size=64, batch_size=2)
    batches = list(ds)
    assert [int(x.shape[0]) for x, _ in batches] == [2, 2, 1]
    x, y = batches[0]
    assert x.shape == (2, 64, 64, 3) and x.dtype == "float32"
    assert y.shape == (2, 64, 64, 1) and y.dtype == "float32"
    assert float(np.min(x)) >= 0.0 and float(np.max(x)) <= 1.0
    assert set(np.unique(np.concatenate([y.numpy() for _, y in batches]))) == {0.0, 1.0}
    # The mask marks the bright square of its own image (pairs are not mixed up).
    for x, y in batches:
        bright = x.numpy().mean(axis=-1, keepdims=True) > 0.6
        assert np.mean(bright == (y.numpy() > 0.5)) > 0.97


def test_a_folder_of_another_size_is_resized(tmp_path):
    split = write_split(tmp_path / "train", n=3, size=96, ext=".png")
    x, y = next(iter(data.make_dataset(split, image_size=32, batch_size=3)))
    assert x.shape == (3, 32, 32, 3) and y.shape == (3, 32, 32, 1)
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}


def test_zero_one_masks_are_read_as_masks(tmp_path):
    split = write_split(tmp_path / "train", n=2)
    for path in (split / "masks").iterdir():
        cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8))
    _, y = next(iter(data.make_dataset(split, image_size=64, batch_size=2)))
    assert set(np.unique(y.numpy())) == {0.0, 1.0}
    assert 0.1 < float(np.mean(y)) < 0.5


def test_shuffle_is_seeded_and_repeat_never_ends(tmp_path):
    split = write_split(tmp_path / "train", n=6)

    def first_values(seed):
        ds = data.make_dataset(split, image_size=64, batch_size=3, shuffle=True, seed=seed, repeat=True)
        return [float(x[:, 0, 0, 0].numpy().sum()) for x, _ in ds.take(8)]

    assert first_values(1) == first_values(1)
    assert first_values(1) != first_values(2)
    assert len(first_values(1)) == 8  # 8 batches of 3 from 6 images: it repeats


def test_unmatched_files_are_an_error_that_lists_them(tmp_path):
    split = write_split(tmp_path / "train", n=3)
    (split / "masks" / "img001.png").unlink()
    cv2.imwrite(str(split / "masks" / "stray.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(folders.DatasetError, match=r"without a mask: img001\.jpg.*without an image: stray\.png"):
        data.make_dataset(split)


@pytest.mark.parametrize("remove", ["", "images", "masks"])
def test_missing_folder_says_how_to_build_it(tmp_path, remove):
    split = write_split(tmp_path / "train", n=1) if remove else tmp_path / "nothing"
    if remove:
        for path in (split / remove).iterdir():
            path.unlink()
        (split / remove).rmdir()
    with pytest.raises(folders.DatasetError, match=r"not found: build it with `python coco.py"):
        data.make_dataset(split)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir()
    with pytest.raises(folders.DatasetError, match=r"no images in .*train/images"):
        data.make_dataset(tmp_path / "train")


def test_hidden_temporary_and_other_files_are_ignored(tmp_path):
    split = write_split(tmp_path / "train", n=2)
    (split / "images" / ".img009.jpg.123.tmp").write_bytes(b"partial")
    (split / "images" / "notes.txt").write_text("not an image")
    assert len(data.find_pairs(split)[0]) == 2


def test_corrupt_files_are_skipped_with_a_warning(tmp_path, caplog):
    split = write_split(tmp_path / "train", n=5)
    good = (split / "images" / "img001.jpg").read_bytes()
    (split / "images" / "img001.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (split / "masks" / "img003.png").write_bytes(b"this is not a png")
    with caplog.at_level(logging.WARNING, logger="data"):
        ds = data.make_dataset(split, image_size=64, batch_size=2)
    assert "skipped 2 unreadable pair(s)" in caplog.text
    assert "img001.jpg" in caplog.text and "img003.png" in caplog.text
    assert int(ds.cardinality()) == 2  # 3 good pairs in batches of 2
    for _ in range(2):  # whole epochs go through
        assert sum(int(x.shape[0]) for x, _ in ds) == 3


def test_read_rgb_converts_and_reports(tmp_path):
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.full((5, 7), 100, np.uint8))
    assert images.read_rgb(gray).shape == (5, 7, 3)
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.full((5, 7, 3), 65535, np.uint16))
    rgb = images.read_rgb(deep)
    assert rgb.dtype == np.uint8 and rgb.max() == 255
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(images.ImageReadError, match=r"bad\.jpg: not an image"):
        images.read_rgb(tmp_path / "bad.jpg")
    with pytest.raises(images.ImageReadError, match=r"missing\.jpg: cannot read"):
        images.read_rgb(tmp_path / "missing.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(images.ImageReadError, match=r"empty\.png: empty file"):
        images.read_rgb(tmp_path / "empty.png")


def test_squash_mask_stays_binary_and_aligned():
    mask = np.zeros((300, 500), np.uint8)
    mask[60:240, 100:400] = 1
    small = images.squash_mask(mask, 32)
    assert set(np.unique(small)) == {0, 1}
    expected = np.zeros((32, 32), np.uint8)
    # The edges fall at 6.4 and 25.6 output pixels: edge pixels are 60% covered (kept),
    # the four corner pixels 36% (dropped).
    expected[6:26, 6:26] = 1
    expected[[6, 6, 25, 25], [6, 25, 6, 25]] = 0
    assert np.array_equal(small, expected)


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "a.png"

    def fail(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(target), "write_bytes", fail)
    with pytest.raises(KeyboardInterrupt):
        images.write_atomic(target, b"data")
    assert list(tmp_path.iterdir()) == []


def test_split_stats_and_report(tmp_path, capsys):
    write_split(tmp_path / "train", n=3, size=64)
    stats = data.split_stats(tmp_path / "train")
    assert stats["images"] == 3 and stats["sizes"] == {"64x64": 3}
    assert stats["coverage"] == pytest.approx(0.25)  # a 32x32 square in each 64x64 mask
    assert data.main([str(tmp_path / "train"), str(tmp_path / "missing")]) == 2
    captured = capsys.readouterr()
    assert "3 pairs, sizes 64x64 (3), mean person coverage 25.0%" in captured.out
    assert "missing not found" in captured.err


def test_every_path_gives_the_model_the_same_input(tmp_path):
    """Training, evaluation, figures and cutouts read a file into the same model input.

    Full-size photos of odd sizes (shrunk and enlarged), one stored sideways with EXIF
    orientation 6: every path shows the model the photo as a viewer shows it.
    """
    from PIL import Image

    import inference

    split = tmp_path / "test"
    (split / "images").mkdir(parents=True)
    (split / "masks").mkdir()
    rng = np.random.default_rng(3)
    shown = {}
    for stem, (h, w), orientation in (("wide", (187, 301), None), ("small", (61, 97), None), ("phone", (233, 157), 6)):
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
        photo = np.clip(ramp + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 :, : w // 2] = 255
        image = Image.fromarray(photo)
        exif = image.getexif()
        if orientation:
            exif[0x0112] = orientation
        image.save(split / "images" / f"{stem}.png", exif=exif)
        Image.fromarray(mask).save(split / "masks" / f"{stem}.png", exif=exif)
        # EXIF 6: the stored pixels are rotated 90 degrees clockwise for display.
        shown[stem] = (np.rot90(photo, -1), np.rot90(mask, -1)) if orientation else (photo, mask)
    names = sorted(shown)

    pipeline = list(data.load_split(split, image_size=128))
    seen = []

    class Recorder:
        image_size = 128

        def __call__(self, batch):
            seen.extend(batch)
            return np.zeros(batch.shape[:3], np.float32)

    photos = [split / "images" / f"{n}.png" for n in names]
    inference.cut_out_photos(
        Recorder(), photos, [tmp_path / f"{n}.png" for n in names], lambda p, a, squashed=None: p, progress=False
    )
    plotted = [
        data.load_pair(  # what figures.plot_split draws
            str(p), str(split / "masks" / p.name), 128
        )
        for p in photos
    ]
    for name, (x, y), cutout_input, (fig_x, fig_y) in zip(names, pipeline, seen, plotted, strict=True):
        expected_x = images.squash(shown[name][0], 128)
        expected_y = images.squash_mask((shown[name][1] > 0).astype(np.uint8), 128)
        for got in (x.numpy(), cutout_input, fig_x):
            assert got.shape == (128, 128, 3)
            assert np.abs(got.astype(int) - expected_x).max() <= 1, name
        for got in (y.numpy()[..., 0], fig_y[..., 0]):
            np.testing.assert_array_equal(got, expected_y, err_msg=name)


def test_backgrounds_from_several_folders_and_their_subfolders(tmp_path):
    """Releases nest their photos by class (places-scenes/src/dataset/train/ALL/NAT_swamp/...)."""
    first, second = tmp_path / "places" / "rooms" / "kitchen", tmp_path / "bg"
    (first / "deeper").mkdir(parents=True)
    second.mkdir()
    photo = images.encode(np.full((40, 60, 3), 90, np.uint8), ".jpg")
    for path in (first / "a.jpg", first / "deeper" / "b.png", second / "c.jpg", second / "d.jpeg"):
        path.write_bytes(photo)
    (first / "notes.txt").write_text("not a photo")
    backgrounds = data.load_backgrounds([tmp_path / "places", second], 32)
    assert int(backgrounds.cardinality()) == 4
    assert [b.shape for b in backgrounds] == [(32, 32, 3)] * 4
    assert int(data.load_backgrounds(str(second), 32).cardinality()) == 2  # one folder, as a string


@pytest.mark.parametrize("kind", ["no photos", "missing"])
def test_a_backgrounds_folder_without_photos_is_a_one_line_error(tmp_path, kind):
    good, bad = tmp_path / "good", tmp_path / "empty"
    good.mkdir()
    (good / "a.jpg").write_bytes(images.encode(np.zeros((8, 8, 3), np.uint8), ".jpg"))
    if kind == "no photos":
        (bad / "sub").mkdir(parents=True)
        (bad / "sub" / "readme.txt").write_text("no photos here")
    with pytest.raises(folders.DatasetError) as e:
        data.load_backgrounds([good, bad], 32)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--backgrounds {bad}: ")
    assert ("no photos (.jpg" in message and "in it or its subfolders" in message) or "no such folder" in message


def test_cutouts_keep_their_aspect_ratio_and_a_margin(tmp_path):
    """A cutout three times as tall as wide stays so in the square it is read into, away from its edges."""
    split = tmp_path / "cutouts" / "train"
    (split / "images").mkdir(parents=True)
    (split / "masks").mkdir()
    mask = np.zeros((90, 30), np.uint8)
    mask[:, 5:25] = 255  # the person spans the photo's height, as a tight cutout does
    cv2.imwrite(str(split / "images" / "p.jpg"), np.full((90, 30, 3), 200, np.uint8))
    cv2.imwrite(str(split / "masks" / "p.png"), mask)
    ((image, person),) = list(data.load_cutouts(split, 64).as_numpy_iterator())
    assert image.shape == (64, 64, 3) and person.shape == (64, 64, 1) and set(np.unique(person)) == {0, 1}
    rows, cols = np.flatnonzero(person[..., 0].any(axis=1)), np.flatnonzero(person[..., 0].any(axis=0))
    height, width = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
    assert height / width == pytest.approx(90 / 20, rel=0.15)
    assert rows[0] >= 2 and rows[-1] <= 61, "a margin above and below: not cut by its photo"
    assert image[32, 32].mean() > 150 and image[0, 0].max() == 0  # the photo in the middle, nothing round it
