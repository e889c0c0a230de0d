"""Builds the person-mask dataset from the public Clothing Co-Parsing release.

    git clone https://github.com/bearpaw/clothing-co-parsing
    python ccp.py --src clothing-co-parsing --out data-ccp            # 128x128, as coco.py
    python ccp.py --src clothing-co-parsing --out data-ccp-full --size 0

Clothing Co-Parsing (Yang, Luo and Lin, CVPR 2014) labels every pixel of 1,004 street-fashion
photos with one of 59 clothing, skin and hair labels. The person mask is every pixel whose
label is not null, bag, purse or wallet (carried bags are background, as in COCO's person
masks). Writes, in coco.py's layout,

    OUT/{train,val,test}/images/<stem>.jpg    the photo, squashed to SIZE x SIZE (or full size)
    OUT/{train,val,test}/masks/<stem>.png     its person mask, 0 or 255

split by a hash of the file name: 10% test, 10% val, the rest train (799 / 90 / 114).
Photos without a pixel-level label map (1005-2098 in the full release) are ignored, and a
photo whose mask is empty (0536 in the release) is skipped and counted.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import cli
import folders
import images

CCP_URL = "https://github.com/bearpaw/clothing-co-parsing"
BACKGROUND = ("null", "bag", "purse", "wallet")  # labels that are not part of the person
SPLITS = ("train", "val", "test")
PROBLEMS = ("missing_photo", "unreadable_photo", "unreadable_mat", "size_mismatch")  # why a pair is not written
EMPTY = "empty_mask"  # a worker's status for a label map without a person pixel


class LabelMapError(ValueError):
    """A .mat file that cannot be read as a label map; the message names it."""


def load_mat(path: Path, variable: str) -> object:
    """One variable of a MATLAB file, or None if the file lacks it.

    Raises:
        LabelMapError: the file is not a readable MATLAB file.
    """
    try:
        return images.read_mat(path, [variable]).get(variable)
    except images.ImageReadError as e:
        raise LabelMapError(str(e)) from None


def read_label_names(path: Path) -> list[str]:
    """The release's label names; a label value is an index into this list (0 is 'null')."""
    try:
        cell = load_mat(path, "label_list")
    except LabelMapError as e:
        raise folders.DatasetError(str(e)) from None
    if not isinstance(cell, np.ndarray) or cell.dtype != object:
        raise folders.DatasetError(f"{path}: no cell array 'label_list' (the release's 1x59 list of label names)")
    # loadmat gives each cell as a 1-element string array (an empty one for an empty cell);
    # MATLAB's order is column-major.
    return [str(np.asarray(c).ravel()[0]) if np.asarray(c).size else "" for c in cell.ravel(order="F")]


def person_lookup(path: Path) -> np.ndarray:
    """A bool per label value: True where the label is part of the person.

    Looked up by name, so a release with another label order still gives the right masks.
    """
    names = read_label_names(path)
    missing = [name for name in BACKGROUND if name not in names]
    if missing:
        raise folders.DatasetError(
            f"{path}: label_list has no {', '.join(repr(n) for n in missing)} label, needed to tell the person "
            f"from the background (labels found: {cli.listing(names, 8)})"
        )
    return np.array([name not in BACKGROUND for name in names])


def read_label_map(path: Path, num_labels: int) -> np.ndarray:
    """The 2-D integer label map ``groundtruth`` of one .mat file, every value a known label.

    Raises:
        LabelMapError: with the file's name and what is wrong.
    """
    labels = load_mat(path, "groundtruth")
    if labels is None:
        raise LabelMapError(f"{path}: no variable 'groundtruth' (the pixel-level label map)")
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        what = (
            f"{labels.dtype} array of shape {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        )
        raise LabelMapError(f"{path}: 'groundtruth' is a {what}, not a 2-D integer label map")
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if low < 0 or high >= num_labels:
        bad = high if high >= num_labels else low
        raise LabelMapError(f"{path}: label value {bad} is not in label_list.mat ({num_labels} labels)")
    return labels


@dataclass
class Task(folders.Pair):
    """One pixel-annotated photo to write."""

    photo: Path
    label_map: Path


@dataclass
class SplitReport(folders.SplitReport):
    """What happened to one split's label maps."""

    label_maps: int = 0
    empty: list = field(default_factory=list)  # stems whose mask has no person pixel

    def record(self, status: str, detail: str) -> None:
        """Counts an empty mask apart from problems: it is the data, not a broken file."""
        if status == EMPTY:
            self.empty.append(detail)
        else:
            super().record(status, detail)


def write_pair(task: Task, size: int, person: np.ndarray) -> tuple[str, str]:
    """Reads one photo and label map, squashes and writes them; returns (status, detail).

    status is ``folders.WRITTEN``, ``EMPTY`` or a problem from PROBLEMS. Runs in a worker process.
    """
    if not task.photo.is_file():
        return "missing_photo", f"{task.photo}: not found (its label map is {task.label_map})"
    try:
        labels = read_label_map(task.label_map, len(person))
    except LabelMapError as e:
        return "unreadable_mat", str(e)
    mask = person[labels].astype(np.uint8)
    if not mask.any():  # checked before decoding the photo, which is then not needed
        return EMPTY, task.label_map.stem
    try:
        # The label maps index the stored pixels, so EXIF orientation is not applied.
        photo = images.read_rgb(task.photo, apply_exif=False)
    except images.ImageReadError as e:
        return "unreadable_photo", str(e)
    if photo.shape[:2] != labels.shape:
        return (
            "size_mismatch",
            f"{task.photo}: {photo.shape[1]}x{photo.shape[0]}, "
            f"label map {task.label_map.name} is {labels.shape[1]}x{labels.shape[0]}",
        )
    if size:
        photo, mask = images.squash(photo, size), images.squash_mask(mask, size)
    # The mask first: a pair counts as done only when the image exists too.
    images.write_atomic(task.mask, images.encode(mask * 255, ".png"))
    images.write_atomic(task.image, images.encode(photo, ".jpg", quality=95))
    return folders.WRITTEN, ""


def check_src(src: Path) -> None:
    """Raises DatasetError naming the first missing part of the release."""
    for path in (src, src / "photos", src / "annotations" / "pixel-level", src / "label_list.mat"):
        if not path.exists():
            raise folders.DatasetError(
                f"{path} not found: get the Clothing Co-Parsing release from {CCP_URL} (git clone or its ZIP) "
                f"so that {src} holds photos/, annotations/pixel-level/ and label_list.mat"
            )


def select(src: Path, out: Path, reports: dict) -> list[Task]:
    """One task per pixel-level label map; photos without one have no mask and are ignored."""
    label_dir = src / "annotations" / "pixel-level"
    tasks = []
    # Hidden names are skipped: macOS leaves ._0001.mat resource forks in some archives.
    for label_map in sorted(p for p in label_dir.glob("*.mat") if not p.name.startswith(".")):
        stem = label_map.stem
        split = folders.split_of(stem)
        reports[split].label_maps += 1
        image, mask = folders.pair_paths(out, split, stem)
        tasks.append(
            Task(split=split, image=image, mask=mask, photo=src / "photos" / f"{stem}.jpg", label_map=label_map)
        )
    if not tasks:
        raise folders.DatasetError(f"{label_dir} has no .mat label maps: get the release from {CCP_URL}")
    return tasks


def build(args: argparse.Namespace) -> dict:
    """Converts the release and writes the split folders; returns the per-split reports."""
    src, out = Path(args.src), Path(args.out)
    check_src(src)
    # 'dataset' keeps coco.py and ccp.py from writing into each other's folders.
    settings = {"dataset": "clothing-co-parsing", "size": args.size, "src": str(src.resolve())}
    folders.check_manifest(out, settings, args.overwrite)
    person = person_lookup(src / "label_list.mat")  # once here: a bad list stops the run at once

    reports = {split: SplitReport() for split in SPLITS}
    tasks = select(src, out, reports)
    folders.prepare(out, SPLITS, settings, tasks, args.overwrite)
    todo = folders.pending(tasks, reports, args.overwrite)
    folders.write_all(todo, functools.partial(write_pair, size=args.size, person=person), reports, args.workers)
    return reports


def print_report(reports: dict) -> None:
    """Per split: what was written, already there, left out as empty, and the problems."""
    for split, r in reports.items():
        empty = f" ({cli.listing(r.empty)})" if r.empty else ""
        print(
            f"{split}: {r.label_maps} label maps; written {r.written}, already there {r.skipped}, "
            f"empty masks skipped {len(r.empty)}{empty}, problems {sum(r.problems.values())}"
        )
        folders.print_problems(r)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert the Clothing Co-Parsing release to person-mask image/mask folders (coco.py's layout).",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument(
        "--src",
        default="clothing-co-parsing",
        help=f"the release ({CCP_URL}) with photos/, annotations/pixel-level/ and label_list.mat",
    )
    folders.add_output_arguments(parser, out="data-ccp")
    args = parser.parse_args(argv)
    folders.check_output_arguments(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("ccp.py", vars(args))
    try:
        reports = build(args)
    except folders.DatasetError as e:
        cli.error("ccp.py", str(e))
        return 2
    except images.WriteError as e:  # e.g. a full disk: the next pair would not fit either
        cli.error("ccp.py", str(e))
        return 1
    print_report(reports)
    written = sum(r.written for r in reports.values())
    there = sum(r.skipped for r in reports.values())
    empty = sum(len(r.empty) for r in reports.values())
    problems = sum(sum(r.problems.values()) for r in reports.values())
    print(
        f"done: {written + there} pairs in {args.out}/{{train,val,test}} (written {written}, already there {there}); "
        f"empty masks skipped {empty}, problems {problems}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
