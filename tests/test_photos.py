"""photos.py on folders of generated photos and masks: every kind of mask, every reason to skip."""

import errno
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import folders
import images
import photos
from conftest import with_exif_orientation

HEIGHT, WIDTH = 90, 60  # portrait, like most photos people cut out


def smooth_photo(height, width, seed):
    y, x = np.mgrid[0:height, 0:width]
    base = np.random.default_rng(seed).integers(40, 200, 3)
    return np.clip(base + np.stack([x, y, x + y], -1) * 40 // (height + width), 0, 255).astype(np.uint8)


def person(height, width):
    """A 0/1 figure: an ellipse standing on the bottom edge, away from the other edges."""
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 2, height * 3 // 4), (width // 4, height // 2), 0, 0, 360, 1, -1)
    return mask


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(images.encode(image, path.suffix))


def expected_mask(soft, height=HEIGHT, width=WIDTH):
    """What photos.py must make of a 0..255 mask: scaled to the photo smoothly, then half or more is person."""
    if soft.shape != (height, width):
        shrink = soft.size > height * width
        soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return (soft >= 128).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """photos/ and masks/ with one pair of each kind; returns (root, {stem: expected 0/1 mask or skip reason})."""
    root = tmp_path_factory.mktemp("mine")
    shape = person(HEIGHT, WIDTH) * 255
    expected = {}

    def pair(stem, mask, photo_ext=".jpg", mask_ext=".png"):
        write(root / "photos" / f"{stem}{photo_ext}", smooth_photo(HEIGHT, WIDTH, len(expected)))
        if mask is not None:
            write(root / "masks" / f"{stem}{mask_ext}", mask)

    pair("full", shape)
    expected["full"] = expected_mask(shape)
    half = cv2.resize(shape, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA)  # a smaller mask
    pair("half", half)
    expected["half"] = expected_mask(half)
    pair("zero_one", shape // 255)  # 0/1, as the original project saved them
    expected["zero_one"] = expected_mask(shape)
    soft = (np.linspace(0, 255, WIDTH)[None].repeat(HEIGHT, 0)).astype(np.uint8)  # a matte: a left-right ramp
    pair("soft", soft)
    expected["soft"] = expected_mask(soft)
    pair("colour", np.dstack([shape] * 3), mask_ext=".jpg")  # a 3-channel mask, even lossy
    expected["colour"] = None  # JPEG noise: checked loosely below
    # A phone photo stored sideways with EXIF orientation 6; its mask is drawn on the photo as shown.
    stored = np.ascontiguousarray(np.rot90(smooth_photo(HEIGHT, WIDTH, 99), 1))  # WIDTH x HEIGHT as stored
    (root / "photos" / "exif.jpg").write_bytes(with_exif_orientation(images.encode(stored, ".jpg"), 6))
    write(root / "masks" / "exif.png", shape)
    expected["exif"] = expected_mask(shape)

    pair("no_mask", None)
    expected["no_mask"] = "no_mask"
    pair("bad_mask", None)
    (root / "masks" / "bad_mask.png").write_bytes(b"\x89PNG not really")
    expected["bad_mask"] = "unreadable_mask"
    pair("bad_photo", shape)
    (root / "photos" / "bad_photo.jpg").write_bytes(b"\xff\xd8 truncated")
    expected["bad_photo"] = "unreadable_photo"
    pair("wide_mask", np.zeros((HEIGHT, HEIGHT), np.uint8) + 255)
    expected["wide_mask"] = "aspect_mismatch"
    pair("empty", np.zeros((HEIGHT, WIDTH), np.uint8))
    expected["empty"] = "empty_mask"
    pair("twice", shape)
    write(root / "photos" / "twice.png", smooth_photo(HEIGHT, WIDTH, 7))  # the same stem twice: left out
    write(root / "masks" / "orphan.png", shape)  # a mask without a photo: noted, not used
    return root, expected


def convert(*argv):
    return photos.main([*map(str, argv), "--workers", "1"])


@pytest.fixture(scope="module")
def converted(folder, tmp_path_factory):
    root, expected = folder
    out = tmp_path_factory.mktemp("out") / "data"
    return out, convert("--photos", root / "photos", "--masks", root / "masks", "--out", out, "--size", "0")


def written_mask(out, stem):
    path = out / folders.split_of(stem) / "masks" / f"{stem}.png"
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}, path
    return mask // 255


def test_every_kind_of_mask_becomes_a_0_255_mask_at_the_photos_size(folder, converted):
    (_, expected), (out, status) = folder, converted
    assert status == 0
    for stem, mask in expected.items():
        if isinstance(mask, str):
            continue
        split = folders.split_of(stem)
        photo = cv2.imread(str(out / split / "images" / f"{stem}.jpg"))
        assert photo.shape[:2] == (HEIGHT, WIDTH), stem  # the EXIF photo as shown, not as stored
        got = written_mask(out, stem)
        if mask is None:  # the lossy 3-channel mask: the same figure up to JPEG noise on its edge
            assert np.mean(got != expected_mask(person(HEIGHT, WIDTH) * 255)) < 0.01
        else:
            np.testing.assert_array_equal(got, mask, err_msg=stem)


def test_each_skipped_photo_is_reported_by_name_and_reason(folder, converted, capsys):
    (root, expected), (out, _) = folder, converted
    for stem, reason in expected.items():
        split = folders.split_of(stem)
        exists = (out / split / "images" / f"{stem}.jpg").exists()
        assert exists == (not isinstance(reason, str)), stem
    assert not list(out.glob("*/images/twice.*")) and not list(out.glob("*/masks/orphan.*"))
    # Converting again reports the same skips (and writes nothing new).
    root = folder[0]
    assert convert("--photos", root / "photos", "--masks", root / "masks", "--out", out, "--size", "0") == 0
    lines = capsys.readouterr().out.splitlines()
    printed = "\n".join(lines)
    for stem, reason in expected.items():
        if isinstance(reason, str):  # one line: the reason, then the file
            assert sum(line.strip().startswith(f"{reason}: ") and f"{stem}." in line for line in lines) == 1, stem
    twice = next(line for line in lines if line.strip().startswith("duplicate_stem: "))
    assert "twice.jpg" in twice and "twice.png" in twice and "the stem 'twice' names two files" in twice
    assert f"1 mask(s) in {root / 'masks'} without a photo, not used: orphan" in printed
    kept = sum(not isinstance(v, str) for v in expected.values())
    assert f"done: {kept} pairs" in printed and f"(written 0, already there {kept}); skipped 6" in printed


def test_split_is_by_stem_and_resumable(folder, converted, tmp_path):
    (root, expected), (out, _) = folder, converted
    for stem, mask in expected.items():
        if not isinstance(mask, str):
            assert (out / folders.split_of(stem) / "masks" / f"{stem}.png").is_file()
    manifest = json.loads((out / folders.MANIFEST).read_text())
    assert manifest["dataset"] == "photos" and manifest["invert"] is False and manifest["size"] == 0
    # An interrupted pair (its mask written, its image not) is written again on the next run.
    victim = out / folders.split_of("full") / "images" / "full.jpg"
    victim.unlink()
    assert convert("--photos", root / "photos", "--masks", root / "masks", "--out", out, "--size", "0") == 0
    assert victim.is_file()


def test_squashed_output(folder, tmp_path):
    root, expected = folder
    out = tmp_path / "data"
    assert convert("--photos", root / "photos", "--masks", root / "masks", "--out", out, "--size", "32") == 0
    mask = written_mask(out, "full")
    assert mask.shape == (32, 32)
    np.testing.assert_array_equal(mask, images.squash_mask(expected["full"], 32))


def test_inverted_masks_with_invert_and_a_note_without(tmp_path, capsys):
    shape = person(HEIGHT, WIDTH) * 255
    for i in range(3):
        write(tmp_path / "p" / f"id{i}.png", smooth_photo(HEIGHT, WIDTH, i))
        write(tmp_path / "m" / f"id{i}.png", np.dstack([255 - shape] * 3))  # person = 0, 3 channels
    assert convert("--photos", tmp_path / "p", "--masks", tmp_path / "m", "--out", tmp_path / "a", "--invert") == 0
    assert "inverted mask" not in capsys.readouterr().out
    np.testing.assert_array_equal(written_mask(tmp_path / "a", "id0"), images.squash_mask(shape // 255, 128))
    assert convert("--photos", tmp_path / "p", "--masks", tmp_path / "m", "--out", tmp_path / "b") == 0
    printed = capsys.readouterr().out
    assert "note: 3 mask(s) are person along most of the photo's border" in printed and "with --invert" in printed
    # The settings are in the manifest: converting into the same folder with others is refused.
    assert convert("--photos", tmp_path / "p", "--masks", tmp_path / "m", "--out", tmp_path / "b", "--invert") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("photos.py: error:") and "invert was False, now True" in err and "\n" not in err


def test_rgba_cutouts_without_masks(tmp_path, capsys):
    alpha = (person(HEIGHT, WIDTH) * 255).astype(np.uint8)
    alpha = cv2.GaussianBlur(alpha, (5, 5), 0)  # a soft matte's edge
    rgba = np.dstack([smooth_photo(HEIGHT, WIDTH, 1), alpha])
    write(tmp_path / "cut" / "one.png", rgba)
    write(tmp_path / "cut" / "flat.jpg", smooth_photo(HEIGHT, WIDTH, 2))  # no alpha: skipped
    assert convert("--photos", tmp_path / "cut", "--out", tmp_path / "out", "--size", "0") == 0
    np.testing.assert_array_equal(written_mask(tmp_path / "out", "one"), (alpha >= 128).astype(np.uint8))
    printed = capsys.readouterr().out
    assert "no_alpha 1" in printed and "flat.jpg: no alpha channel" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--photos", "nowhere"], "--photos nowhere: no such folder"),
        (["--photos", "{empty}"], "no photos"),
        (["--photos", "{empty}", "--masks", "nowhere"], "--masks nowhere: no such folder"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{empty}", str(tmp_path / "empty")) for a in argv]
    assert photos.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("photos.py: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "case, out, message",
    [
        ("full disk", "out", r"cannot write {tmp}/out/(train|val|test)/masks/one\.png: No space left on device"),
        ("a file in the way", "notes.txt/out", r"cannot write {tmp}/notes.txt/out/train/images/: Not a directory"),
    ],
)
def test_a_write_that_fails_stops_with_one_line(tmp_path, monkeypatch, capsys, case, out, message):
    write(tmp_path / "photos" / "one.jpg", smooth_photo(HEIGHT, WIDTH, 1))
    write(tmp_path / "masks" / "one.png", (person(HEIGHT, WIDTH) * 255).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("mine")
    if case == "full disk":  # the manifest is written, then the disk is full: the mask half written
        write_bytes = Path.write_bytes

        def full(path, data):
            if not path.name.startswith(".one.png"):
                return write_bytes(path, data)
            write_bytes(path, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Path, "write_bytes", full)
    argv = ["--photos", tmp_path / "photos", "--masks", tmp_path / "masks", "--out", tmp_path / out]
    assert convert(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch("photos.py: error: " + message.format(tmp=re.escape(str(tmp_path))), err[0])
    if case == "full disk":  # nothing but the manifest: no partial mask, no temporary file
        assert [p.name for p in (tmp_path / out).rglob("*") if p.is_file()] == ["dataset.json"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_size_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as e:
        photos.parse_args(["--photos", ".", "--size", "100"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--size: the height and width must be 0 (as stored) or positive multiples of 32" in err
    assert "Received: --size=100" in err
