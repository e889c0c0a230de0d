"""Builds a person-mask dataset from your own photos: a folder of photos and a folder of masks.

    python photos.py --photos my/photos --masks my/masks --out data-mine            # 128x128
    python photos.py --photos my/photos --masks my/masks --out data-mine --size 0   # full size
    python photos.py --photos portraits --masks masks --invert --out data-id        # person = 0
    python photos.py --photos people-rgba --out data-cutouts                        # RGBA: alpha = mask

A photo and its mask share a file stem (``0042.jpg`` and ``0042.png``). A mask may be any
size with the photo's aspect ratio (it is scaled to the photo), one channel or three, and
0/1, 0/255 or soft (a matte: half or more is person); ``--invert`` reads person = 0,
background = 255. Without ``--masks`` every photo must carry an alpha channel (RGBA cutouts),
which is its mask. Writes coco.py's layout

    OUT/{train,val,test}/images/<stem>.jpg    the photo, squashed to SIZE x SIZE (or full size)
    OUT/{train,val,test}/masks/<stem>.png     its person mask, 0 or 255

split by a hash of the stem (``folders.split_of``: 10% test, 10% val, the rest train), the
same on every machine. Like coco.py it is resumable and atomic and writes a manifest; each
photo it skips is reported by name and reason.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

import cli
import folders
import images

SPLITS = ("train", "val", "test")
ASPECT_TOLERANCE = 0.02  # a mask's aspect ratio may differ from its photo's by this much (rounding of a resize)
INVERTED = "inverted?"  # a written pair's detail when its mask looks inverted (see looks_inverted)


def read_mask_file(path: Path, invert: bool) -> np.ndarray:
    """A mask file as uint8 0..255, person high: 0/1 masks are stretched, ``invert`` flips it.

    Raises:
        images.ImageReadError: with the file's name and the reason.
    """
    gray = images.read_gray(path)
    if gray.max() <= 1:  # a 0/1 mask
        gray = gray * np.uint8(255)
    return 255 - gray if invert else gray


def looks_inverted(mask: np.ndarray) -> bool:
    """Whether most of a 0/1 mask's border is person: a person touches the bottom edge and perhaps the
    sides, while the background of an inverted mask (person = 0) runs all around."""
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return border.mean() > 0.6


class SkipError(Exception):
    """A pair that cannot be written: ``kind`` (a short reason) and the message naming the file."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def load_source(photo_path: Path, mask_path: Path | None, invert: bool) -> tuple[np.ndarray, np.ndarray]:
    """A photo and its 0/1 mask at the photo's size (a smaller or larger mask scaled to it).

    Raises:
        SkipError: with the reason a pair cannot be written.
    """
    try:
        if mask_path is None:
            photo, soft = images.read_rgba(photo_path)
        else:
            photo = images.read_rgb(photo_path)
    except images.ImageReadError as e:
        raise SkipError("unreadable_photo", str(e)) from None
    if mask_path is None:
        if soft is None:
            raise SkipError("no_alpha", f"{photo_path}: no alpha channel to use as the mask (or give --masks)")
        soft = 255 - soft if invert else soft
    else:
        try:
            soft = read_mask_file(mask_path, invert)
        except images.ImageReadError as e:
            raise SkipError("unreadable_mask", str(e)) from None
    height, width = photo.shape[:2]
    mask_height, mask_width = soft.shape
    if abs((mask_width / mask_height) / (width / height) - 1) > ASPECT_TOLERANCE:
        raise SkipError(
            "aspect_mismatch",
            f"{mask_path}: {mask_width}x{mask_height}, but its photo {photo_path.name} is {width}x{height} "
            "(not the same aspect ratio)",
        )
    if (mask_height, mask_width) != (height, width):  # smooth, then thresholded: no staircase when enlarging
        shrink = mask_height * mask_width > height * width
        soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    mask = (soft >= 128).astype(np.uint8)
    if not mask.any():
        raise SkipError("empty_mask", f"{mask_path or photo_path}: no person pixel")
    return photo, mask


@dataclass
class Task(folders.Pair):
    """One photo (and its mask file, or None for an RGBA photo) to write."""

    photo: Path
    source_mask: Path | None


@dataclass
class SplitReport(folders.SplitReport):
    """What happened to one split's photos; ``inverted`` lists masks that look inverted."""

    photos: int = 0
    inverted: list = field(default_factory=list)

    def record(self, status: str, detail: str) -> None:
        """Notes a mask that looks inverted; names each skipped photo with its reason."""
        if status == folders.WRITTEN and detail.startswith(INVERTED):
            self.inverted.append(detail[len(INVERTED) :].strip())
        super().record(status, "" if status == folders.WRITTEN else f"{status}: {detail}")


def write_pair(task: Task, size: int, invert: bool) -> tuple[str, str]:
    """Reads, scales, squashes and writes one pair; returns (status, detail). Runs in a worker process."""
    try:
        photo, mask = load_source(task.photo, task.source_mask, invert)
    except SkipError as e:
        return e.kind, str(e)
    inverted = looks_inverted(mask)
    if size:
        photo, mask = images.squash(photo, size), images.squash_mask(mask, size)
    # The mask first: a pair counts as done only when the image exists too.
    images.write_atomic(task.mask, images.encode(mask * 255, ".png"))
    images.write_atomic(task.image, images.encode(photo, ".jpg", quality=95))
    return folders.WRITTEN, f"{INVERTED} {task.photo.name}" if inverted else ""


def by_stem(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """The image files of a folder by stem, and the stems that two or more files share."""
    files: dict[str, list[Path]] = {}
    for path in images.list_images(folder):
        files.setdefault(path.stem, []).append(path)
    unique = {stem: paths[0] for stem, paths in files.items() if len(paths) == 1}
    return unique, {stem: paths for stem, paths in files.items() if len(paths) > 1}


def select(args: argparse.Namespace, out: Path, reports: dict, notes: list) -> list[Task]:
    """One task per photo with a mask (or, without --masks, per photo); the others are skipped and counted."""
    photos_dir = Path(args.photos)
    masks_dir = Path(args.masks) if args.masks else None
    for folder, option in ((photos_dir, "--photos"), (masks_dir, "--masks")):
        if folder is not None and not folder.is_dir():
            raise folders.DatasetError(f"{option} {folder}: no such folder")
    photos, twice = by_stem(photos_dir)
    if not photos and not twice:
        raise folders.DatasetError(f"--photos {photos_dir}: no photos ({', '.join(images.IMAGE_EXTENSIONS)}) in it")
    masks, masks_twice = by_stem(masks_dir) if masks_dir else ({}, {})
    tasks = []
    for stem in sorted(photos.keys() | twice.keys()):
        report = reports[folders.split_of(stem)]
        report.photos += 1
        if stem in twice or stem in masks_twice:
            shared = ", ".join(str(p) for p in twice.get(stem, []) + masks_twice.get(stem, []))
            report.record("duplicate_stem", f"{shared}: the stem {stem!r} names two files, so the pair is ambiguous")
        elif masks_dir is not None and stem not in masks:
            report.record("no_mask", f"{photos[stem]}: no mask with the stem {stem!r} in {masks_dir}")
        else:
            image, mask = folders.pair_paths(out, folders.split_of(stem), stem)
            tasks.append(Task(folders.split_of(stem), image, mask, photo=photos[stem], source_mask=masks.get(stem)))
    orphans = sorted((masks.keys() | masks_twice.keys()) - photos.keys() - twice.keys())
    if orphans:
        notes.append(f"{len(orphans)} mask(s) in {masks_dir} without a photo, not used: {cli.listing(orphans)}")
    return tasks


def build(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Converts the folders and writes the split folders; returns the per-split reports and notes."""
    out = Path(args.out)
    settings = {
        "dataset": "photos",
        "size": args.size,
        "photos": str(Path(args.photos).resolve()),
        "masks": str(Path(args.masks).resolve()) if args.masks else None,
        "invert": args.invert,
    }
    folders.check_manifest(out, settings, args.overwrite)
    reports, notes = {split: SplitReport() for split in SPLITS}, []
    tasks = select(args, out, reports, notes)
    folders.prepare(out, SPLITS, settings, tasks, args.overwrite)
    todo = folders.pending(tasks, reports, args.overwrite)
    folders.write_all(todo, functools.partial(write_pair, size=args.size, invert=args.invert), reports, args.workers)
    return reports, notes


def print_report(reports: dict, notes: list[str], invert: bool) -> None:
    """Per split: photos, written, already there, and every photo skipped with its reason."""
    for split, r in reports.items():
        skipped = sum(r.problems.values())
        print(f"{split}: {r.photos} photos; written {r.written}, already there {r.skipped}, skipped {skipped}")
        folders.print_problems(r, shown=None, label="skipped")
    for note in notes:
        print(f"note: {note}")
    inverted = [name for r in reports.values() for name in r.inverted]
    if inverted:
        flip = "without --invert" if invert else "with --invert"
        print(
            f"note: {len(inverted)} mask(s) are person along most of the photo's border, as an inverted mask "
            f"(person = 0) would: {cli.listing(inverted, 3)}; if they are, convert again {flip} --overwrite"
        )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="photos.py",
        description="Convert a folder of photos and a folder of person masks to coco.py's image/mask folders.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--photos", required=True, help="folder of photos")
    parser.add_argument(
        "--masks",
        default=None,
        help="folder of masks with the photos' stems, any size of the same aspect ratio (default: each photo's "
        "alpha channel)",
    )
    parser.add_argument("--invert", action="store_true", help="masks are inverted: person = 0, background = 255")
    folders.add_output_arguments(parser, out="data-photos")
    args = parser.parse_args(argv)
    folders.check_output_arguments(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("photos.py", vars(args))
    try:
        reports, notes = build(args)
    except folders.DatasetError as e:
        cli.error("photos.py", str(e))
        return 2
    except images.WriteError as e:  # e.g. a full disk: the next pair would not fit either
        cli.error("photos.py", str(e))
        return 1
    print_report(reports, notes, args.invert)
    written = sum(r.written for r in reports.values())
    there = sum(r.skipped for r in reports.values())
    skipped = sum(sum(r.problems.values()) for r in reports.values())
    print(
        f"done: {written + there} pairs in {args.out}/{{train,val,test}} (written {written}, already there {there}); "
        f"skipped {skipped}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
