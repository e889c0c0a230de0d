"""coco.py and the built-in sample: the real pycocotools path on generated COCO-format data."""

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

import coco
import folders
import images
import sample

SIZE = 128


@pytest.fixture(scope="session")
def sample_coco(tmp_path_factory):
    """A small sample (90 + 30 photos) and what the filter must do with each image."""
    root = tmp_path_factory.mktemp("sample") / "coco"
    expected = sample.write_sample(root, num_train=90, num_val=30, seed=3)
    return root, expected


def build(coco_dir, out, *extra):
    args = coco.parse_args(["--coco-dir", str(coco_dir), "--out", str(out), "--workers", "2", *extra])
    return coco.build(args)


@pytest.fixture(scope="session")
def built(sample_coco, tmp_path_factory):
    coco_dir, expected = sample_coco
    out = tmp_path_factory.mktemp("built") / "data"
    reports = build(coco_dir, out)
    return out, reports


def stems(folder):
    return sorted(p.stem for p in Path(folder).iterdir() if not p.name.startswith("."))


def kept_ids(expected, source):
    return {i for i, r in expected[source].items() if r == "kept"}


def test_sample_is_a_varied_coco_dataset(sample_coco):
    root, expected = sample_coco
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    index = COCO()
    index.dataset = data
    index.createIndex()
    sizes = {(i["width"], i["height"]) for i in data["images"]}
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    persons = [a for a in data["annotations"] if a["category_id"] == 1]
    assert {a["category_id"] for a in data["annotations"]} - {1}, "no distractor categories"
    assert any(len(a["segmentation"]) > 1 for a in persons if not a["iscrowd"]), "no multi-part polygons"
    crowds = [a for a in persons if a["iscrowd"]]
    assert crowds and all(isinstance(a["segmentation"]["counts"], list) for a in crowds), "crowd RLE"
    all_results = Counter(expected["train2017"].values()) + Counter(expected["val2017"].values())
    assert set(all_results) == {"kept", "no_person", "several_persons", "too_small", "too_large"}
    for info in data["images"][:5]:
        photo = images.read_rgb(root / "train2017" / info["file_name"])
        assert photo.shape == (info["height"], info["width"], 3)


def test_sample_is_deterministic(sample_coco, tmp_path):
    root, expected = sample_coco
    again = sample.write_sample(tmp_path, num_train=90, num_val=30, seed=3)
    assert again == expected
    for name in ("annotations/instances_val2017.json", "val2017/000002000007.jpg"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes()


def test_filter_keeps_exactly_the_expected_images(sample_coco, built):
    _, expected = sample_coco
    out, reports = built
    train_val = {int(s) for split in ("train", "val") for s in stems(out / split / "images")}
    assert train_val == kept_ids(expected, "train2017")
    assert {int(s) for s in stems(out / "test" / "images")} == kept_ids(expected, "val2017")
    assert stems(out / "val" / "images"), "the val split is empty"
    for split in ("train", "val", "test"):
        assert stems(out / split / "images") == stems(out / split / "masks")
    # Every rejection for the right reason, counted per source annotation file.
    for source, splits in coco.COCO_SPLITS.items():
        got = sum((reports[s].rejected for s in splits), Counter())
        want = Counter(r for r in expected[source].values() if r not in ("kept", "no_person"))
        assert got == want
        assert sum(reports[s].person_images for s in splits) == sum(r != "no_person" for r in expected[source].values())


def test_the_sample_draws_its_cases_around_the_filters_band():
    """sample.py's target areas sit MARGIN inside and outside the band coco.py filters by (one definition)."""
    low, high = folders.MIN_AREA, folders.MAX_AREA
    assert sample.AREA_RANGES["kept"] == pytest.approx((low + sample.MARGIN, high - sample.MARGIN))
    assert sample.AREA_RANGES["too_small"][1] == pytest.approx(low - sample.MARGIN)
    assert sample.AREA_RANGES["too_large"][0] == pytest.approx(high + sample.MARGIN)
    assert [c["id"] for c in sample.CATEGORIES if c["name"] == "person"] == [folders.COCO_PERSON]
    assert coco.filter_reason([{"area": low * 100}], 10, 10) == "too_small"
    assert coco.filter_reason([{"area": high * 100}], 10, 10) == "too_large"


def test_val_split_is_chosen_by_image_id(built):
    out, _ = built
    for stem in stems(out / "val" / "images"):
        assert coco.in_val(int(stem), 0.05)
    for stem in stems(out / "train" / "images"):
        assert not coco.in_val(int(stem), 0.05)


def independent_mask(ann, width, height):
    """The annotation rasterized without pycocotools: cv2.fillPoly, or our own RLE decoding."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        mask = np.zeros((height, width), np.uint8)
        for poly in seg:
            points = np.round(np.array(poly).reshape(-1, 2) * 8).astype(np.int32)
            cv2.fillPoly(mask, [points], 1, shift=3)
        return mask
    values = np.repeat(np.arange(len(seg["counts"])) % 2, seg["counts"]).astype(np.uint8)
    return values.reshape((width, height)).T  # column-major runs


def test_masks_match_the_annotations(sample_coco, built):
    root, _ = sample_coco
    out, _ = built
    checked = Counter()
    for source, splits in coco.COCO_SPLITS.items():
        data = json.loads((root / "annotations" / f"instances_{source}.json").read_text())
        infos = {i["id"]: i for i in data["images"]}
        for split in splits:
            for stem in stems(out / split / "masks"):
                (ann,) = [a for a in data["annotations"] if a["image_id"] == int(stem) and a["category_id"] == 1]
                info = infos[int(stem)]
                truth = independent_mask(ann, info["width"], info["height"])
                truth = cv2.resize(truth.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA) >= 0.5
                written = cv2.imread(str(out / split / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
                assert written.shape == (SIZE, SIZE) and set(np.unique(written)) <= {0, 255}
                written = written > 0
                iou = (written & truth).sum() / (written | truth).sum()
                assert iou >= 0.95, f"{split}/{stem}: IoU {iou:.3f}"
                photo = cv2.imread(str(out / split / "images" / f"{stem}.jpg"))
                assert photo.shape == (SIZE, SIZE, 3)
                checked["crowd" if ann["iscrowd"] else "polygons"] += 1
    assert checked["crowd"] >= 1 and checked["polygons"] >= 20, checked


def test_rerun_is_a_no_op(sample_coco, built):
    coco_dir, _ = sample_coco
    out, first = built
    files = sorted(out.rglob("*.*"))
    before = {p: p.stat().st_mtime_ns for p in files if p.name != folders.MANIFEST}
    reports = build(coco_dir, out)
    assert sum(r.written for r in reports.values()) == 0
    assert sum(r.skipped for r in reports.values()) == sum(r.kept for r in first.values())
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert sorted(out.rglob("*.*")) == files


def test_interrupted_run_leaves_no_partial_file_and_rerun_completes(sample_coco, built, tmp_path, monkeypatch):
    coco_dir, _ = sample_coco
    reference, _ = built
    out = tmp_path / "data"
    real_replace, calls = images.os.replace, []

    def replace(src, dst):  # the process "dies" after writing the 9th temporary file
        calls.append(dst)
        if len(calls) == 9:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(images.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        build(coco_dir, out, "--workers", "1")
    monkeypatch.undo()
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    # What a killed process leaves: a stale temporary file, and a mask whose image is missing.
    (out / "train" / "images" / ".000001000999.jpg.123.tmp").write_bytes(b"\xff\xd8partial")
    written = {p.relative_to(out) for p in out.rglob("*") if p.suffix in (".jpg", ".png")}
    assert written and all(
        p.read_bytes() == (reference / p.relative_to(out)).read_bytes() for p in out.rglob("*") if p.suffix == ".jpg"
    )
    reports = build(coco_dir, out, "--workers", "1")
    assert sum(r.written for r in reports.values()) > 0
    assert not list(out.rglob("*.tmp"))
    for path in reference.rglob("*"):
        if path.suffix in (".jpg", ".png"):
            assert (out / path.relative_to(reference)).read_bytes() == path.read_bytes(), path


def test_missing_annotation_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    code = coco.main(["--coco-dir", str(tmp_path / "coco"), "--out", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "instances_train2017.json not found" in err and coco.COCO_URL in err
    assert not (tmp_path / "data").exists()


def test_missing_image_folder_is_one_line_error(sample_coco, tmp_path, capsys):
    coco_dir, _ = sample_coco
    partial = tmp_path / "coco"
    (partial / "annotations").mkdir(parents=True)
    for source in ("train2017", "val2017"):
        name = f"instances_{source}.json"
        (partial / "annotations" / name).write_bytes((coco_dir / "annotations" / name).read_bytes())
    (partial / "val2017").mkdir()
    code = coco.main(["--coco-dir", str(partial), "--out", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "train2017 not found" in err


def test_missing_and_unreadable_images_are_reported(sample_coco, tmp_path, capsys):
    coco_dir, expected = sample_coco
    copy = tmp_path / "coco"
    for path in coco_dir.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(coco_dir)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(coco_dir)).write_bytes(path.read_bytes())
    first, second = sorted(kept_ids(expected, "val2017"))[:2]
    (copy / "val2017" / f"{first:012d}.jpg").unlink()
    (copy / "val2017" / f"{second:012d}.jpg").write_bytes(b"not a jpeg")
    code = coco.main(["--coco-dir", str(copy), "--out", str(tmp_path / "data"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "problems: missing_file 1, unreadable 1" in out
    assert f"{second:012d}.jpg" in out
    assert len(stems(tmp_path / "data" / "test" / "images")) == len(kept_ids(expected, "val2017")) - 2


def test_other_settings_need_overwrite(built, sample_coco, capsys):
    coco_dir, _ = sample_coco
    out, _ = built
    code = coco.main(["--coco-dir", str(coco_dir), "--out", str(out), "--size", "64"])
    assert code == 2 and "size was 128, now 64" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--size", "100"], ["--val-fraction", "1.5"], ["--workers", "0"]])
def test_bad_option_values(option, capsys):
    with pytest.raises(SystemExit) as e:
        coco.parse_args(option)
    assert e.value.code == 2 and option[0] in capsys.readouterr().err


def test_sample_option_builds_folders_through_the_filter(tmp_path, monkeypatch, capsys):
    real = sample.write_sample
    monkeypatch.setattr(sample, "write_sample", lambda out, seed=0: real(out, num_train=40, num_val=12, seed=seed))
    assert coco.main(["--sample", "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "person images found" in out and "average person area" in out
    for split in ("train", "test"):
        assert stems(tmp_path / "s" / split / "images")
    assert (tmp_path / "s" / "coco" / "annotations" / "instances_val2017.json").exists()


def test_sample_script_main(tmp_path, capsys):
    assert sample.main(["--out", str(tmp_path), "--num-train", "6", "--num-val", "2", "--seed", "1"]) == 0
    assert len(list((tmp_path / "train2017").glob("*.jpg"))) == 6
    assert "train2017:" in capsys.readouterr().out
