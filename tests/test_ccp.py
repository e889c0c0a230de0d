"""ccp.py on tiny Clothing Co-Parsing releases built here (the real one is not on users' machines)."""

import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

import ccp
import folders
import images
from conftest import with_exif_orientation

# Background labels at other indices than in the real release (bag 2, purse 33, wallet 56):
# the converter must find them by name.
LABELS = ["null", "accessories", "skin", "wallet", "hair", "bag", "shoes", "purse", "dress"]
BACKGROUND = {LABELS.index(name) for name in ("null", "bag", "purse", "wallet")}
GOOD = ["0001", "0002", "0005", "0007", "0016", "0021"]  # two stems in each split (by crc32)
EMPTY, BAD_PHOTO, BAD_MAT, MISMATCH, NO_PHOTO, BAD_LABEL = "0003", "0004", "0006", "0008", "0009", "0010"
UNANNOTATED = "1005"  # a photo with image-level tags only: no .mat, to be ignored
ROTATED = GOOD[0]  # its JPEG says "rotate 90 degrees" in EXIF; the label map indexes the stored pixels


def expected_split(stem):
    bucket = zlib.crc32(stem.encode()) % 10
    return {0: "test", 1: "val"}.get(bucket, "train")


def label_cells(names):
    """A MATLAB cell array of strings, as label_list.mat holds it: loads as a (1, N) object array."""
    cells = np.empty((1, len(names)), dtype=object)
    cells[0, :] = names
    return cells


def smooth_photo(height, width, seed):
    """A smooth colour photo, so that JPEG re-encoding changes it only a little."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.random.default_rng(seed).integers(40, 200, 3)
    return np.clip(base + np.stack([x, y, x + y], -1) * 40 // (height + width), 0, 255).astype(np.uint8)


def random_labels(height, width, seed):
    """A label map with blocks of every label, so that each one is checked."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(LABELS), (height // 4 + 1, width // 4 + 1), dtype=np.uint8)
    blocks.flat[: len(LABELS)] = np.arange(len(LABELS))
    return np.kron(blocks, np.ones((4, 4), np.uint8))[:height, :width]


def write_release(root, labels=LABELS):
    """A release with good photos and one of each kind of problem; returns {stem: label map}."""
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    scipy.io.savemat(root / "label_list.mat", {"label_list": label_cells(labels)})
    label_maps = {}
    for i, stem in enumerate([*GOOD, EMPTY, BAD_PHOTO, BAD_MAT, MISMATCH, NO_PHOTO, BAD_LABEL, UNANNOTATED]):
        height, width = 60 + 4 * i, 40 + 2 * i  # portrait, like the release, and all different
        photo = smooth_photo(height, width, i)
        jpeg = images.encode(photo, ".jpg", quality=98)
        if stem == ROTATED:
            jpeg = with_exif_orientation(jpeg, 6)
        if stem != NO_PHOTO:
            (root / "photos" / f"{stem}.jpg").write_bytes(jpeg)
        groundtruth = random_labels(height, width, i)
        if stem == EMPTY:
            groundtruth = np.where(groundtruth % 2, LABELS.index("bag"), 0).astype(np.uint8)  # null and bag only
        if stem == MISMATCH:
            groundtruth = groundtruth[:-2]
        if stem == BAD_LABEL:
            groundtruth[0, 0] = 200
        if stem != UNANNOTATED:
            label_maps[stem] = groundtruth
            scipy.io.savemat(root / "annotations" / "pixel-level" / f"{stem}.mat", {"groundtruth": groundtruth})
    (root / "photos" / f"{BAD_PHOTO}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "annotations" / "pixel-level" / f"{BAD_MAT}.mat").write_bytes(b"MATLAB 5.0 MAT-file, corrupt")
    return label_maps


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("ccp") / "clothing-co-parsing"
    return root, write_release(root)


def build(src, out, *extra):
    return ccp.build(ccp.parse_args(["--src", str(src), "--out", str(out), *extra]))


@pytest.fixture(scope="module")
def full_size(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "data"
    return out, build(release[0], out, "--size", "0", "--workers", "2")


def person(groundtruth):
    return (~np.isin(groundtruth, list(BACKGROUND))).astype(np.uint8)


def stems(folder):
    return sorted(p.stem for p in Path(folder).iterdir())


def read_mask(path):
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}, path
    return mask


def test_release_label_list_loads_like_the_real_one(release):
    cell = scipy.io.loadmat(release[0] / "label_list.mat")["label_list"]
    assert cell.shape == (1, len(LABELS)) and cell.dtype == object
    assert cell[0, 0].shape == (1,) and cell[0, 0][0] == "null"
    assert ccp.read_label_names(release[0] / "label_list.mat") == LABELS


def test_mask_rule_is_pixel_exact_at_full_size(release, full_size):
    src, label_maps = release
    out, _ = full_size
    for stem in GOOD:
        split = expected_split(stem)
        mask = read_mask(out / split / "masks" / f"{stem}.png")
        truth = person(label_maps[stem])
        assert 0 < truth.sum() < truth.size
        np.testing.assert_array_equal(mask, truth * 255, err_msg=stem)
        photo = images.read_rgb(out / split / "images" / f"{stem}.jpg")
        source = images.read_rgb(src / "photos" / f"{stem}.jpg", apply_exif=False)
        assert photo.shape == source.shape
        assert np.abs(photo.astype(int) - source).mean() < 2, stem


def test_exif_orientation_is_not_applied(release, full_size):
    src, label_maps = release
    out, _ = full_size
    stored = label_maps[ROTATED].shape
    assert images.read_rgb(src / "photos" / f"{ROTATED}.jpg").shape[:2] == stored[::-1], "EXIF not in the test photo"
    written = images.read_rgb(out / expected_split(ROTATED) / "images" / f"{ROTATED}.jpg")
    assert written.shape[:2] == stored


def test_splits_follow_crc32_of_the_stem(full_size):
    out, reports = full_size
    for split in ccp.SPLITS:
        want = sorted(s for s in GOOD if expected_split(s) == split)
        assert want, f"no test stem falls in {split}"
        assert stems(out / split / "images") == stems(out / split / "masks") == want
    assert sum(r.label_maps for r in reports.values()) == len(GOOD) + 6  # the unannotated photo ignored


def test_size_128_squashes_like_images_py(release, tmp_path):
    src, label_maps = release
    build(src, tmp_path / "data", "--workers", "1")
    for stem in GOOD:
        split = expected_split(stem)
        mask = read_mask(tmp_path / "data" / split / "masks" / f"{stem}.png")
        np.testing.assert_array_equal(mask, images.squash_mask(person(label_maps[stem]), 128) * 255, err_msg=stem)
        assert images.read_rgb(tmp_path / "data" / split / "images" / f"{stem}.jpg").shape == (128, 128, 3)
    assert not list((tmp_path / "data").rglob("*.tmp"))


def test_empty_mask_is_skipped_and_counted(full_size):
    out, reports = full_size
    assert reports[expected_split(EMPTY)].empty == [EMPTY]
    assert sum(len(r.empty) for r in reports.values()) == 1
    assert not list(out.rglob(f"{EMPTY}.*"))


def test_bad_files_are_reported_and_the_others_written(release, tmp_path, capsys):
    src, _ = release
    assert ccp.main(["--src", str(src), "--out", str(tmp_path / "data"), "--size", "0", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    for text in (
        f"{BAD_PHOTO}.jpg: not an image",
        f"{BAD_MAT}.mat: cannot read as a MATLAB file",
        f"{MISMATCH}.jpg: {40 + 2 * 9}x{60 + 4 * 9}, label map {MISMATCH}.mat is {40 + 2 * 9}x{60 + 4 * 9 - 2}",
        f"{NO_PHOTO}.jpg: not found",
        f"{BAD_LABEL}.mat: label value 200 is not in label_list.mat ({len(LABELS)} labels)",
        f"empty masks skipped 1 ({EMPTY})",
        f"done: {len(GOOD)} pairs in {tmp_path / 'data'}/{{train,val,test}} (written {len(GOOD)}, already there 0); "
        "empty masks skipped 1, problems 5",
    ):
        assert text in out, text
    written = sorted(p.stem for p in (tmp_path / "data").rglob("*.jpg"))
    assert written == sorted(GOOD)
    assert not list((tmp_path / "data").rglob("*.tmp"))


def test_problems_are_counted_per_kind(full_size):
    _, reports = full_size
    total = sum((r.problems for r in reports.values()), Counter())
    assert total == {"unreadable_photo": 1, "unreadable_mat": 2, "size_mismatch": 1, "missing_photo": 1}
    assert set(total) <= set(ccp.PROBLEMS)


def test_rerun_skips_existing_and_removes_stale_temporaries(release, full_size):
    src, _ = release
    out, _ = full_size
    files = sorted(out.rglob("*.*"))
    before = {p: p.stat().st_mtime_ns for p in files if p.name != folders.MANIFEST}
    stale = out / "train" / "images" / ".0001.jpg.123.tmp"  # what a killed run leaves
    stale.write_bytes(b"\xff\xd8partial")
    reports = build(src, out, "--size", "0", "--workers", "2")
    assert sum(r.written for r in reports.values()) == 0
    assert sum(r.skipped for r in reports.values()) == len(GOOD)
    assert sum(len(r.empty) for r in reports.values()) == 1  # re-read, still empty, still counted
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert sorted(out.rglob("*.*")) == files and not stale.exists()


def test_interrupted_pair_is_written_again(release, tmp_path):
    src, label_maps = release
    out = tmp_path / "data"
    build(src, out, "--size", "0", "--workers", "1")
    stem = GOOD[0]
    (out / expected_split(stem) / "images" / f"{stem}.jpg").unlink()  # killed between mask and image
    reports = build(src, out, "--size", "0", "--workers", "1")
    assert sum(r.written for r in reports.values()) == 1
    assert (out / expected_split(stem) / "images" / f"{stem}.jpg").exists()


def test_other_size_is_one_line_error(release, full_size, capsys):
    out, _ = full_size
    code = ccp.main(["--src", str(release[0]), "--out", str(out), "--size", "64"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("ccp.py: error: ") and "size was 0, now 64" in err and "--overwrite" in err


@pytest.mark.parametrize("missing", ["", "photos", "annotations/pixel-level", "label_list.mat"])
def test_missing_release_part_is_one_line_error(missing, tmp_path, capsys):
    src = tmp_path / "clothing-co-parsing"
    if missing:
        write_release(src)
        target = src / missing
        if target.is_dir():
            for path in target.iterdir():
                path.unlink()
            target.rmdir()
        else:
            target.unlink()
    code = ccp.main(["--src", str(src), "--out", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{src / missing if missing else src} not found" in err and ccp.CCP_URL in err
    assert not (tmp_path / "data").exists()


def test_label_list_without_a_background_label_is_one_line_error(tmp_path, capsys):
    src = tmp_path / "clothing-co-parsing"
    write_release(src)
    scipy.io.savemat(src / "label_list.mat", {"label_list": label_cells([n for n in LABELS if n != "wallet"])})
    code = ccp.main(["--src", str(src), "--out", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "label_list.mat" in err and "'wallet'" in err


@pytest.mark.parametrize("option", [["--size", "100"], ["--size", "-32"], ["--workers", "0"]])
def test_bad_option_values(option, capsys):
    with pytest.raises(SystemExit) as e:
        ccp.parse_args(option)
    assert e.value.code == 2 and option[0] in capsys.readouterr().err
