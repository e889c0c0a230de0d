"""photos.py on folders of generated photos and masks: every kind of mask, every reason to skip."""

import errno
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

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
    assert "note: 3 of 3 mask(s) are person along most of the photo's border" in printed and "with --invert" in printed
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


# Real releases: masks named with a suffix, MATLAB masks, instance ids, a held-out release, VITON's values.


def blobs(height, width, ids):
    """An instance-id mask: one rectangle per id (1..ids) side by side, 0 around them."""
    mask = np.zeros((height, width), np.uint8)
    step = width // ids
    for i in range(ids):
        mask[height // 4 : height - 2, i * step + 1 : (i + 1) * step - 1] = i + 1
    return mask


def skip_lines(printed, reason):
    """The indented 'REASON: message' lines of a report."""
    return [line.strip() for line in printed.splitlines() if line.strip().startswith(f"{reason}: ")]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A PFCN-like release: images/NNNNN.jpg, masks/NNNNN_mask.mat (key 'mask', 0/1, twice the photo's size),
    plus .mat files of every other kind, a PNG mask with the suffix, masks without a photo and a stray file."""
    root = tmp_path_factory.mktemp("pfcn")
    figure = person(2 * HEIGHT, 2 * WIDTH)  # 0/1 at twice the photo's size
    expected = {}

    def photo(stem):
        write(root / "images" / f"{stem}.jpg", smooth_photo(HEIGHT, WIDTH, len(expected)))

    def mat(stem, **arrays):
        (root / "masks").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "masks" / f"{stem}_mask.mat", arrays)

    for stem in ("00001", "00002"):
        photo(stem)
        mat(stem, mask=figure)
        expected[stem] = expected_mask(figure * 255)
    photo("00003")  # MATLAB's double, as in PFCN's files, and a scalar beside the mask (not a 2-D array)
    mat("00003", mask=figure.astype(np.float64), version=np.array(3.0))
    expected["00003"] = expected_mask(figure * 255)
    photo("00004")  # two 2-D arrays: which one is the mask is the user's call
    mat("00004", mask=figure, weights=np.ones_like(figure))
    expected["00004"] = "mat_several_arrays"
    photo("00005")  # no 2-D array at all
    mat("00005", name=np.array(["a portrait"]), ids=np.arange(4))
    expected["00005"] = "mat_no_array"
    photo("00006")
    (root / "masks" / "00006_mask.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    expected["00006"] = "unreadable_mask"
    photo("00007")  # a PNG mask with the suffix
    write(root / "masks" / "00007_mask.png", person(HEIGHT, WIDTH) * 255)
    expected["00007"] = expected_mask(person(HEIGHT, WIDTH) * 255)
    photo("00008")  # no mask
    expected["00008"] = "no_mask"
    for stem in ("00100", "00101", "00102"):  # masks without a photo, as PFCN has 282
        mat(stem, mask=figure)
    write(root / "masks" / "readme.png", figure * 255)  # not a mask: it lacks the suffix
    return root, expected


def test_suffix_and_mat_masks(release, tmp_path, capsys):
    root, expected = release
    out = tmp_path / "out"
    argv = ["--photos", root / "images", "--masks", root / "masks", "--mask-suffix", "_mask", "--out", out]
    assert convert(*argv, "--size", "0") == 0
    printed = capsys.readouterr().out
    kept = [stem for stem, e in expected.items() if not isinstance(e, str)]
    for stem in kept:
        np.testing.assert_array_equal(written_mask(out, stem), expected[stem], err_msg=stem)
        assert cv2.imread(str(out / folders.split_of(stem) / "images" / f"{stem}.jpg")).shape == (HEIGHT, WIDTH, 3)
    for stem, reason in expected.items():
        if isinstance(reason, str):
            assert not list(out.glob(f"*/*/{stem}.*")), stem
            assert sum(f"{stem}" in line for line in skip_lines(printed, reason)) == 1, (stem, reason)
    several = skip_lines(printed, "mat_several_arrays")[0]
    assert several.endswith("00004_mask.mat: several 2-D arrays (mask, weights): choose with --mat-key")
    assert skip_lines(printed, "mat_no_array")[0].endswith(
        "00005_mask.mat: no 2-D array of numbers in it (it holds name, ids)"
    )
    assert "cannot read as a MATLAB file" in skip_lines(printed, "unreadable_mask")[0]
    assert skip_lines(printed, "no_mask")[0].endswith(f"00008.jpg: no mask 00008_mask.* in {root / 'masks'}")
    assert f"3 mask(s) in {root / 'masks'} without a photo, not used: 00100_mask, 00101_mask, 00102_mask" in printed
    assert f"1 file(s) in {root / 'masks'} do not end with '_mask', not used: readme.png" in printed
    assert f"done: {len(kept)} pairs" in printed and "skipped 4; 3 mask(s) without a photo" in printed
    assert json.loads((out / folders.MANIFEST).read_text())["mask_suffix"] == "_mask"


def test_mat_key_picks_the_array(release, tmp_path, capsys):
    root, expected = release
    argv = ["--photos", root / "images", "--masks", root / "masks", "--mask-suffix", "_mask.mat", "--size", "0"]
    assert convert(*argv, "--mat-key", "weights", "--out", tmp_path / "w") == 0
    printed = capsys.readouterr().out
    np.testing.assert_array_equal(written_mask(tmp_path / "w", "00004"), np.ones((HEIGHT, WIDTH), np.uint8))
    # The other files hold no 'weights': each is skipped with the variables it does hold.
    line = next(line for line in skip_lines(printed, "mat_key") if "00001_mask.mat" in line)
    assert line.endswith("00001_mask.mat: no variable 'weights' (--mat-key); it holds mask")
    assert any("00003_mask.mat" in line for line in skip_lines(printed, "mat_key"))
    # A suffix with its extension takes only that type: 00007_mask.png is not a mask now, nor a missing one.
    assert f"00007.jpg: no mask 00007_mask.mat in {root / 'masks'}" in printed
    assert convert(*argv, "--mat-key", "version", "--out", tmp_path / "v") == 0
    line = next(line for line in skip_lines(capsys.readouterr().out, "mat_key") if "00003_mask.mat" in line)
    assert line.endswith("00003_mask.mat: 'version' is not a 2-D array of numbers (float64 (1, 1))")


def test_instance_ids_are_each_a_person(tmp_path, capsys):
    ids = blobs(HEIGHT, WIDTH, 8)  # 8 people, ids 1..8
    write(tmp_path / "photos" / "street.jpg", smooth_photo(HEIGHT, WIDTH, 1))
    write(tmp_path / "masks" / "street_mask.png", ids)
    # A palette PNG, as the Penn-Fudan release ships them: the ids are palette indices, whatever their colours.
    palette = Image.fromarray(blobs(HEIGHT, WIDTH, 3), "P")
    palette.putpalette([200, 200, 200, 0, 0, 90, 90, 0, 0, 0, 40, 0] + [0] * (252 * 3))
    write(tmp_path / "photos" / "palette.jpg", smooth_photo(HEIGHT, WIDTH, 2))
    palette.save(tmp_path / "masks" / "palette_mask.png")
    ids16 = blobs(HEIGHT, WIDTH, 2).astype(np.uint16)  # 16-bit ids (1 and 2 would be 0 in 8 bits)
    write(tmp_path / "photos" / "deep.jpg", smooth_photo(HEIGHT, WIDTH, 3))
    cv2.imwrite(str(tmp_path / "masks" / "deep_mask.png"), ids16)
    argv = ["--photos", tmp_path / "photos", "--masks", tmp_path / "masks", "--mask-suffix", "_mask", "--size", "0"]
    assert convert(*argv, "--instances", "--out", tmp_path / "out") == 0
    np.testing.assert_array_equal(written_mask(tmp_path / "out", "street"), (ids > 0).astype(np.uint8))
    np.testing.assert_array_equal(written_mask(tmp_path / "out", "palette"), (blobs(HEIGHT, WIDTH, 3) > 0) * 1)
    np.testing.assert_array_equal(written_mask(tmp_path / "out", "deep"), (ids16 > 0).astype(np.uint8))
    capsys.readouterr()
    # Without --instances ids 1..8 are dark grey, no person: skipped, and the reason says what to do.
    assert convert(*argv, "--out", tmp_path / "plain") == 0
    line = next(line for line in skip_lines(capsys.readouterr().out, "empty_mask") if "street_mask" in line)
    assert line.endswith(
        "street_mask.png: no person pixel (its largest value is 8: if its values are instance ids, "
        "convert with --instances)"
    )


def test_viton_values_254_and_255_are_the_person_and_1_is_not(tmp_path):
    figure = person(HEIGHT, WIDTH)
    viton = np.where(figure > 0, 254, 0).astype(np.uint8)
    viton[HEIGHT // 2 :][figure[HEIGHT // 2 :] > 0] = 255  # two person values
    viton[[0, -1]] = 1  # VITON's first and last rows
    write(tmp_path / "image" / "000016_0.jpg", smooth_photo(HEIGHT, WIDTH, 1))
    write(tmp_path / "image-mask" / "000016_0.png", viton)
    assert (
        convert(
            "--photos", tmp_path / "image", "--masks", tmp_path / "image-mask", "--out", tmp_path / "o", "--size", "0"
        )
        == 0
    )
    figure[[0, -1]] = 0  # the rows of 1: background
    np.testing.assert_array_equal(written_mask(tmp_path / "o", "000016_0"), figure)


def test_one_split_for_a_held_out_release(folder, tmp_path, capsys):
    root, expected = folder
    out = tmp_path / "held-out"
    assert convert("--photos", root / "photos", "--masks", root / "masks", "--out", out, "--split", "test") == 0
    kept = sorted(stem for stem, e in expected.items() if not isinstance(e, str))
    assert sorted(p.stem for p in (out / "test" / "images").iterdir()) == kept
    assert sorted(p.stem for p in (out / "test" / "masks").iterdir()) == kept
    assert not any(list((out / split / kind).iterdir()) for split in ("train", "val") for kind in ("images", "masks"))
    printed = capsys.readouterr().out
    assert "train: 0 photos" in printed and f"test: {len(expected) + 1} photos" in printed  # 'twice': one stem
    assert json.loads((out / folders.MANIFEST).read_text())["split"] == "test"
    # Converting into it again with the hash split is refused: the manifest says test.
    assert convert("--photos", root / "photos", "--masks", root / "masks", "--out", out) == 2
    assert "split was 'test', now 'hash'" in capsys.readouterr().err


def test_masks_of_the_whole_frame_are_noted_or_skipped(tmp_path, capsys):
    for i in range(3):
        write(tmp_path / "p" / f"face{i}.jpg", smooth_photo(HEIGHT, WIDTH, i))
        write(tmp_path / "m" / f"face{i}.png", person(HEIGHT, WIDTH) * 255)
    write(tmp_path / "m" / "face0.png", np.full((HEIGHT, WIDTH), 255, np.uint8))  # the whole frame
    argv = ["--photos", tmp_path / "p", "--masks", tmp_path / "m", "--size", "0"]
    assert convert(*argv, "--out", tmp_path / "kept") == 0
    printed = capsys.readouterr().out
    assert "note: 1 mask(s) cover over 98% of their photo: face0.jpg;" in printed and "--max-coverage 0.98" in printed
    assert (tmp_path / "kept" / folders.split_of("face0") / "masks" / "face0.png").is_file()
    assert convert(*argv, "--out", tmp_path / "guarded", "--max-coverage", "0.98") == 0
    printed = capsys.readouterr().out
    assert skip_lines(printed, "max_coverage")[0].endswith(
        "face0.png: the person covers 100.0% of the photo, over --max-coverage 0.98"
    )
    assert "cover over 98%" not in printed and not list((tmp_path / "guarded").glob("*/*/face0.*"))


def test_notes_on_masks_read_two_ways_and_on_a_few_close_ups(tmp_path, capsys):
    figure = person(HEIGHT, WIDTH)
    for i in range(6):
        write(tmp_path / "p" / f"p{i}.jpg", smooth_photo(HEIGHT, WIDTH, i))
        write(tmp_path / "m" / f"p{i}.png", figure * 255)
    write(tmp_path / "m" / "p1.png", figure)  # 0/1 among 0/255 masks
    close_up = np.ones((HEIGHT, WIDTH), np.uint8)
    close_up[: HEIGHT // 3, : WIDTH // 3] = 0  # a face filling the frame but for a corner
    write(tmp_path / "m" / "p2.png", close_up * 255)
    assert convert("--photos", tmp_path / "p", "--masks", tmp_path / "m", "--out", tmp_path / "o", "--size", "0") == 0
    printed = capsys.readouterr().out
    assert (
        "note: 1 mask(s) hold only 0 and 1 and 5 larger values; the 1 with only 0 and 1 (1 read as person): "
        "p1.jpg; check that they are read right" in printed
    )
    assert "inverted mask" not in printed  # one close-up of six is not a release of inverted masks


def test_an_earlier_manifest_resumes_and_new_settings_are_guarded(folder, tmp_path, capsys):
    root, expected = folder
    out = tmp_path / "out"
    argv = ["--photos", root / "photos", "--masks", root / "masks", "--out", out, "--size", "0"]
    assert convert(*argv) == 0
    manifest = json.loads((out / folders.MANIFEST).read_text())
    earlier = {key: value for key, value in manifest.items() if key not in photos.LATER_SETTINGS}
    (out / folders.MANIFEST).write_text(json.dumps(earlier))  # as photos.py wrote it before the new options
    assert convert(*argv) == 0
    assert "(written 0, already there 6)" in capsys.readouterr().out
    assert convert(*argv, "--instances") == 2
    assert "instances was False, now True" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--mask-suffix", "_mask"], "--mask-suffix needs --masks"),
        (["--masks", ".", "--instances", "--invert"], "--instances and --invert cannot be used together"),
        (["--max-coverage", "0"], "--max-coverage must be a fraction over 0 and at most 1. Received: 0.0"),
        (["--max-coverage", "1.5"], "--max-coverage must be a fraction over 0 and at most 1. Received: 1.5"),
        (["--split", "all"], "argument --split: invalid choice: 'all'"),
    ],
)
def test_bad_new_options_are_argument_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        photos.parse_args(["--photos", ".", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_masks_beside_their_photos(tmp_path, capsys):
    write(tmp_path / "both" / "a.jpg", smooth_photo(HEIGHT, WIDTH, 1))
    write(tmp_path / "both" / "a_mask.png", person(HEIGHT, WIDTH) * 255)
    both = tmp_path / "both"
    assert (
        convert("--photos", both, "--masks", both, "--mask-suffix", "_mask", "--out", tmp_path / "o", "--size", "0")
        == 0
    )
    assert "done: 1 pairs" in capsys.readouterr().out
    np.testing.assert_array_equal(written_mask(tmp_path / "o", "a"), person(HEIGHT, WIDTH))
    assert convert("--photos", both, "--masks", both, "--out", tmp_path / "p") == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"photos.py: error: --masks {both} is the --photos folder: give --mask-suffix to tell the masks "
        "from the photos"
    )


def test_copies_of_a_photo_and_of_held_out_photos_are_skipped(tmp_path, capsys):
    figure = person(HEIGHT, WIDTH) * 255
    for i in range(4):
        write(tmp_path / "train" / f"t{i}.jpg", smooth_photo(HEIGHT, WIDTH, i))
        write(tmp_path / "train-masks" / f"t{i}.png", figure)
    (tmp_path / "train" / "t9.jpg").write_bytes((tmp_path / "train" / "t1.jpg").read_bytes())  # a copy
    write(tmp_path / "train-masks" / "t9.png", figure)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "v0.jpg").write_bytes((tmp_path / "train" / "t2.jpg").read_bytes())  # a test photo in train
    write(tmp_path / "test" / "v1.jpg", smooth_photo(HEIGHT, WIDTH, 50))
    argv = ["--photos", tmp_path / "train", "--masks", tmp_path / "train-masks", "--size", "0"]
    assert convert(*argv, "--out", tmp_path / "all") == 0  # by default every photo is a pair
    assert "done: 5 pairs" in capsys.readouterr().out
    assert convert(*argv, "--skip-duplicates", "--held-out", tmp_path / "test", "--out", tmp_path / "o") == 0
    printed = capsys.readouterr().out
    assert sorted(p.stem for p in (tmp_path / "o").glob("*/images/*.jpg")) == ["t0", "t1", "t3"]
    assert skip_lines(printed, "duplicate_photo") == [
        f"duplicate_photo: {tmp_path / 'train' / 't9.jpg'}: the same file as t1.jpg"
    ]
    assert skip_lines(printed, "held_out") == [
        f"held_out: {tmp_path / 'train' / 't2.jpg'}: the same file as {tmp_path / 'test' / 'v0.jpg'} (--held-out)"
    ]
    assert "done: 3 pairs" in printed and "skipped 2" in printed
    assert json.loads((tmp_path / "o" / folders.MANIFEST).read_text())["held_out"] == [str(tmp_path / "test")]
    assert convert(*argv, "--held-out", tmp_path / "nowhere", "--out", tmp_path / "p") == 2
    assert capsys.readouterr().err.strip() == f"photos.py: error: --held-out {tmp_path / 'nowhere'}: no such folder"
    assert not (tmp_path / "p").exists()
