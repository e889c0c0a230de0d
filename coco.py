"""Builds the person-mask dataset from COCO 2017 with the original's filter.

    python coco.py --coco-dir /path/to/coco --out data    # real COCO 2017
    python coco.py --sample --out data-sample             # the built-in synthetic sample

Keeps an image only if it has exactly one person annotation (crowd ones counted) whose
area is strictly between 20% and 70% of the image, and writes

    OUT/{train,val,test}/images/<stem>.jpg    the photo squashed to SIZE x SIZE
    OUT/{train,val,test}/masks/<stem>.png     its person mask, 0 or 255

``test`` is filtered val2017; ``val`` is a deterministic fraction of filtered train2017
(chosen by image id) used for validation during training; ``train`` is the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

import cli
import folders
import images
import sample

COCO_URL = "https://cocodataset.org/#download"
COCO_SPLITS = {"train2017": ("train", "val"), "val2017": ("test",)}  # source -> output splits
REASONS = ("several_persons", "too_small", "too_large")  # why a person image is rejected


def filter_reason(anns: list[dict], width: int, height: int) -> str:
    """The original's rule: 'kept', or why a person image is rejected.

    Args:
        anns: every person annotation of the image, crowd ones included.
        width, height: the image's size from the annotation file.
    """
    if len(anns) != 1:
        return "several_persons"
    fraction = anns[0]["area"] / (width * height)
    if fraction <= folders.MIN_AREA:
        return "too_small"
    if fraction >= folders.MAX_AREA:
        return "too_large"
    return "kept"


def in_val(image_id: int, val_fraction: float) -> bool:
    """Deterministic held-out choice by image id (the same on every run and machine)."""
    return zlib.crc32(str(image_id).encode()) / 2**32 < val_fraction


@dataclass
class Task(folders.Pair):
    """One kept image to write."""

    source: Path
    ann: dict
    width: int
    height: int


@dataclass
class SplitReport(folders.SplitReport):
    """What happened to one output split's source images."""

    person_images: int = 0
    kept: int = 0
    areas: list = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)


def person_mask(ann: dict, width: int, height: int) -> np.ndarray:
    """``COCO.annToMask`` of one annotation (polygons, RLE or crowd RLE) at the photo's size."""
    coco = COCO()  # an empty index: annToMask only needs the image's size
    coco.imgs[ann["image_id"]] = {"width": width, "height": height}
    return coco.annToMask(ann)


def write_pair(task: Task, size: int) -> tuple[str, str]:
    """Reads, squashes and writes one image and its mask; returns (status, detail).

    status is ``folders.WRITTEN`` or the problem: 'missing_file', 'unreadable' or 'size_mismatch'.
    Runs in a worker process.
    """
    if not task.source.is_file():
        return "missing_file", str(task.source)
    try:
        # COCO's polygons index the stored pixels, so EXIF orientation is not applied.
        photo = images.read_rgb(task.source, apply_exif=False)
    except images.ImageReadError as e:
        return "unreadable", str(e)
    if photo.shape[:2] != (task.height, task.width):
        return (
            "size_mismatch",
            f"{task.source}: {photo.shape[1]}x{photo.shape[0]}, annotation says {task.width}x{task.height}",
        )
    mask = person_mask(task.ann, task.width, task.height)
    if size:
        photo, mask = images.squash(photo, size), images.squash_mask(mask, size)
    # The mask first: a pair counts as done only when the image exists too.
    images.write_atomic(task.mask, images.encode(mask * 255, ".png"))
    images.write_atomic(task.image, images.encode(photo, ".jpg", quality=95))
    return folders.WRITTEN, ""


def select(coco_dir: Path, out: Path, val_fraction: float, reports: dict) -> list[Task]:
    """Applies the filter to both annotation files; returns the images to write."""
    tasks = []
    for source, splits in COCO_SPLITS.items():
        print(f"loading {coco_dir / 'annotations' / f'instances_{source}.json'}", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            coco = COCO(str(coco_dir / "annotations" / f"instances_{source}.json"))
        for image_id in sorted(coco.getImgIds(catIds=[folders.COCO_PERSON])):
            info = coco.imgs[image_id]
            split = splits[0] if len(splits) == 1 or not in_val(image_id, val_fraction) else splits[1]
            report = reports[split]
            report.person_images += 1
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=[folders.COCO_PERSON], iscrowd=None))
            reason = filter_reason(anns, info["width"], info["height"])
            if reason != "kept":
                report.rejected[reason] += 1
                continue
            report.kept += 1
            report.areas.append(anns[0]["area"] / (info["width"] * info["height"]))
            image, mask = folders.pair_paths(out, split, Path(info["file_name"]).stem)
            tasks.append(
                Task(
                    split=split,
                    image=image,
                    mask=mask,
                    source=coco_dir / source / info["file_name"],
                    ann=anns[0],
                    width=info["width"],
                    height=info["height"],
                )
            )
    return tasks


def check_coco_dir(coco_dir: Path) -> None:
    """Raises folders.DatasetError naming the first missing COCO file or folder."""
    needed = [coco_dir / "annotations" / f"instances_{s}.json" for s in COCO_SPLITS]
    needed += [coco_dir / s for s in COCO_SPLITS]
    for path in needed:
        if not path.exists():
            raise folders.DatasetError(
                f"{path} not found: download COCO 2017 (2017 Train images, 2017 Val images, "
                f"2017 Train/Val annotations) from {COCO_URL} and unzip them so that "
                f"{coco_dir} holds annotations/, train2017/ and val2017/"
            )


def build(args: argparse.Namespace) -> dict:
    """Filters COCO and writes the split folders; returns the per-split reports."""
    coco_dir, out = Path(args.coco_dir), Path(args.out)
    check_coco_dir(coco_dir)
    settings = {"size": args.size, "val_fraction": args.val_fraction, "coco_dir": str(coco_dir.resolve())}
    folders.check_manifest(out, settings, args.overwrite)

    reports = {split: SplitReport() for splits in COCO_SPLITS.values() for split in splits}
    tasks = select(coco_dir, out, args.val_fraction, reports)
    folders.prepare(out, reports.keys(), settings, tasks, args.overwrite)
    todo = folders.pending(tasks, reports, args.overwrite)
    folders.write_all(todo, functools.partial(write_pair, size=args.size), reports, args.workers)
    return reports


def print_report(reports: dict) -> None:
    """What the original printed per split, plus the rejections and problems."""
    for split, r in reports.items():
        area = f"{100 * float(np.mean(r.areas)):.1f}%" if r.areas else "n/a (nothing kept)"
        rejected = ", ".join(f"{k} {r.rejected[k]}" for k in REASONS)
        print(f"{split}: {r.person_images} person images found, {r.kept} kept, average person area {area}")
        print(f"  rejected: {rejected}; written {r.written}, already there {r.skipped}")
        folders.print_problems(r)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Filter COCO 2017 to one-person photos and write 128x128 image/mask folders.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument(
        "--coco-dir",
        default=None,
        help="COCO 2017 folder with annotations/, train2017/, val2017/ (default: coco; with --sample: OUT/coco)",
    )
    folders.add_output_arguments(parser, out="data")
    parser.add_argument(
        "--val-fraction", type=float, default=0.05, help="fraction of filtered train2017 held out as val/"
    )
    parser.add_argument(
        "--sample", action="store_true", help="first write the built-in synthetic COCO-format sample, then filter it"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the built-in sample (with --sample)")
    args = parser.parse_args(argv)
    folders.check_output_arguments(parser, args)
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1). Received: {args.val_fraction}")
    if args.coco_dir is None:
        args.coco_dir = str(Path(args.out) / "coco") if args.sample else "coco"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("coco.py", vars(args))
    try:
        if args.sample:
            coco_dir = Path(args.coco_dir)
            if args.overwrite or not all(
                (coco_dir / "annotations" / f"instances_{s}.json").exists() for s in COCO_SPLITS
            ):
                print(f"writing the built-in sample to {coco_dir}", flush=True)
                sample.write_sample(coco_dir, seed=args.seed)
        reports = build(args)
    except folders.DatasetError as e:
        cli.error("coco.py", str(e))
        return 2
    except images.WriteError as e:  # e.g. a full disk: the next pair would not fit either
        cli.error("coco.py", str(e))
        return 1
    print_report(reports)
    kept = sum(r.kept for r in reports.values())
    print(f"done: {kept} images kept, folders in {args.out}/{{train,val,test}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
