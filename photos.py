"""Builds a person-mask dataset from your own photos: a folder of photos and a folder of masks.

    python photos.py --photos my/photos --masks my/masks --out data-mine            # 128x128
    python photos.py --photos my/photos --masks my/masks --out data-mine --size 0   # full size
    python photos.py --photos portraits --masks masks --invert --out data-id        # person = 0
    python photos.py --photos people-rgba --out data-cutouts                        # RGBA: alpha = mask
    python photos.py --photos pfcn/images_data_crop --masks pfcn/images_mask --mask-suffix _mask \
        --max-coverage 0.98 --out data-pfcn --size 0                                  # 00001_mask.mat
    python photos.py --photos PennFudanPed/PNGImages --masks PennFudanPed/PedMasks --mask-suffix _mask \
        --instances --split test --out data-penn-fudan --size 0                      # held out, ids 1..N

A photo and its mask share a file stem (``0042.jpg`` and ``0042.png``), or the mask's stem
is the photo's with ``--mask-suffix`` after it (``0042_mask.png``). A mask may be an image or a
MATLAB file (``.mat``: its one 2-D array, or ``--mat-key``), of any size with the photo's
aspect ratio (it is scaled to the photo), one channel or three. The rule for its values: a
mask that holds only 0 and 1 is a 0/1 mask (1 = person); any other is read as 0..255 and 128
or more is person (0/255, a soft matte, or 0/1/254/255 as in VITON: 1 is not person there);
``--instances`` reads instance ids (0 = background, 1..N = one person each: any non-zero
value is person); ``--invert`` reads person = 0, background = 255. Without ``--masks`` every
photo must carry an alpha channel (RGBA cutouts), which is its mask. Writes coco.py's layout

    OUT/{train,val,test}/images/<stem>.jpg    the photo, squashed to SIZE x SIZE (or full size)
    OUT/{train,val,test}/masks/<stem>.png     its person mask, 0 or 255

split by a hash of the stem (``folders.split_of``: 10% test, 10% val, the rest train), the
same on every machine, or all in one split (``--split test``: a release held out for
validation). ``--skip-duplicates`` leaves out a photo that is the same file as another (a
copy under another name, which could land in two splits), ``--held-out FOLDER`` one that is
the same file as a photo in FOLDER (a release's own test photos). Like coco.py it is
resumable and atomic and writes a manifest; each photo it skips is reported by name and
reason, and masks without a photo are counted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

import cli
import folders
import images

SPLITS = ("train", "val", "test")
HASH = "hash"  # --split's default: each pair's split by a hash of its stem
MASK_EXTENSIONS = (*images.IMAGE_EXTENSIONS, ".mat")
ASPECT_TOLERANCE = 0.02  # a mask's aspect ratio may differ from its photo's by this much (rounding of a resize)
# A kept mask covering more of its photo than this is noted: a mask of the whole frame is often wrong, and
# a close-up that fills the frame has no edge to learn from.
FULL = 0.98
# The settings added after the first manifests, and what a manifest without them stands for.
LATER_SETTINGS = {
    "mask_suffix": "",
    "mat_key": None,
    "instances": False,
    "split": HASH,
    "max_coverage": None,
    "skip_duplicates": False,
    "held_out": None,
}

# What a written pair's detail notes about its mask (workers return "FLAG,FLAG name"): how its
# values were read, and what looks wrong.
ZERO_ONE, LEVELS, IDS = "0-1", "0-255", "ids"
INVERTED, FULL_FRAME = "inverted", "full"


@dataclass(frozen=True)
class MaskRules:
    """How to read a mask file's values: the options a worker needs."""

    invert: bool = False
    instances: bool = False
    mat_key: str | None = None
    max_coverage: float | None = None


class SkipError(Exception):
    """A pair that cannot be written: ``kind`` (a short reason) and the message naming the file."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def mat_array(path: Path, key: str | None) -> np.ndarray:
    """The mask array of a MATLAB file: the variable ``key``, or else its one 2-D numeric array.

    Raises:
        images.ImageReadError: not a MATLAB file scipy reads.
        SkipError: no such variable, or no 2-D array, or several and no ``key``.
    """
    contents = images.read_mat(path)
    arrays = {
        name: np.squeeze(value)
        for name, value in contents.items()
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and np.squeeze(value).ndim == 2
    }
    held = ", ".join(contents) or "no variable"
    if key is not None:
        if key not in contents:
            raise SkipError("mat_key", f"{path}: no variable {key!r} (--mat-key); it holds {held}")
        if key not in arrays:
            value = contents[key]
            what = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise SkipError("mat_key", f"{path}: {key!r} is not a 2-D array of numbers ({what})")
        return arrays[key]
    if not arrays:
        raise SkipError("mat_no_array", f"{path}: no 2-D array of numbers in it (it holds {held})")
    if len(arrays) > 1:
        raise SkipError(
            "mat_several_arrays", f"{path}: several 2-D arrays ({', '.join(arrays)}): choose with --mat-key"
        )
    return next(iter(arrays.values()))


def read_mask_file(path: Path, rules: MaskRules) -> tuple[np.ndarray, str]:
    """A mask file as uint8 0..255, person high, and how its values were read (ZERO_ONE, LEVELS or IDS).

    Only 0 and 1 (or a .mat file's 0..1): 1 is person, stretched to 255; other values are 0..255
    (so 0/1/254/255 keeps 254 and 255); instance ids: any non-zero value is person; ``invert``
    flips it.

    Raises:
        images.ImageReadError: with the file's name and the reason.
        SkipError: a .mat file without one mask array.
    """
    if path.suffix.lower() == ".mat":
        values = mat_array(path, rules.mat_key)
    else:  # ids as stored (16 bits, a palette's colours), not as a brightness
        values = images.read_values(path) if rules.instances else images.read_gray(path)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise images.ImageReadError(f"{path}: NaN or infinite values")
    if rules.instances:
        person = values != 0
        soft, scale = (person.any(axis=-1) if person.ndim == 3 else person).astype(np.uint8) * np.uint8(255), IDS
    elif values.max() <= 1:  # a 0/1 mask (or a .mat file's 0..1 matte)
        stretched = values * np.uint8(255) if values.dtype == np.uint8 else np.clip(np.rint(values * 255.0), 0, 255)
        soft, scale = stretched.astype(np.uint8), ZERO_ONE
    else:
        soft, scale = np.clip(np.rint(values), 0, 255).astype(np.uint8), LEVELS
    return (255 - soft if rules.invert else soft), scale


def looks_inverted(mask: np.ndarray) -> bool:
    """Whether most of a 0/1 mask's border is person: a person touches the bottom edge and perhaps the
    sides, while the background of an inverted mask (person = 0) runs all around."""
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return border.mean() > 0.6


def load_source(photo_path: Path, mask_path: Path | None, rules: MaskRules) -> tuple[np.ndarray, np.ndarray, str]:
    """A photo, its 0/1 mask at the photo's size (a smaller or larger mask scaled to it) and how the mask was read.

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
        soft, scale = (255 - soft if rules.invert else soft), ""
    else:
        try:
            soft, scale = read_mask_file(mask_path, rules)
        except images.ImageReadError as e:
            raise SkipError("unreadable_mask", str(e)) from None
    top = int(soft.max())
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
        hint = ""
        if scale == LEVELS and not rules.invert and top < 128:
            hint = f" (its largest value is {top}: if its values are instance ids, convert with --instances)"
        raise SkipError("empty_mask", f"{mask_path or photo_path}: no person pixel{hint}")
    coverage = float(mask.mean())
    if rules.max_coverage is not None and coverage > rules.max_coverage:
        raise SkipError(
            "max_coverage",
            f"{mask_path or photo_path}: the person covers {coverage:.1%} of the photo, over --max-coverage "
            f"{rules.max_coverage:g}",
        )
    return photo, mask, scale


@dataclass
class Task(folders.Pair):
    """One photo (and its mask file, or None for an RGBA photo) to write."""

    photo: Path
    source_mask: Path | None


@dataclass
class SplitReport(folders.SplitReport):
    """What happened to one split's photos; ``flagged`` lists the written photos by each flag of their mask."""

    photos: int = 0
    flagged: dict = field(default_factory=dict)

    def record(self, status: str, detail: str) -> None:
        """Notes what a written pair's mask was flagged with; names each skipped photo with its reason."""
        if status == folders.WRITTEN:
            flags, name = detail.split(" ", 1)
            for flag in filter(None, flags.split(",")):
                self.flagged.setdefault(flag, []).append(name)
        super().record(status, "" if status == folders.WRITTEN else f"{status}: {detail}")


def write_pair(task: Task, size: int, rules: MaskRules) -> tuple[str, str]:
    """Reads, scales, squashes and writes one pair; returns (status, detail). Runs in a worker process."""
    try:
        photo, mask, scale = load_source(task.photo, task.source_mask, rules)
    except SkipError as e:
        return e.kind, str(e)
    flags = [scale] if scale else []
    if looks_inverted(mask):
        flags.append(INVERTED)
    if mask.mean() > FULL:
        flags.append(FULL_FRAME)
    if size:
        photo, mask = images.squash(photo, size), images.squash_mask(mask, size)
    # The mask first: a pair counts as done only when the image exists too.
    images.write_atomic(task.mask, images.encode(mask * 255, ".png"))
    images.write_atomic(task.image, images.encode(photo, ".jpg", quality=95))
    return folders.WRITTEN, f"{','.join(flags)} {task.photo.name}"


def by_stem(paths: list[Path], stem_of=lambda path: path.stem) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Files by the stem ``stem_of`` gives them, and the stems that two or more files share."""
    files: dict[str, list[Path]] = {}
    for path in paths:
        files.setdefault(stem_of(path), []).append(path)
    unique = {stem: paths[0] for stem, paths in files.items() if len(paths) == 1}
    return unique, {stem: paths for stem, paths in files.items() if len(paths) > 1}


def photo_stem(mask: Path, suffix: str) -> str | None:
    """The stem of the photo a mask file belongs to: its stem less ``suffix``, or None if it does not end so.

    ``suffix`` may end with the extension ("_mask.png": only PNG masks) or not ("_mask": any).
    """
    extension = Path(suffix).suffix
    if extension.lower() in MASK_EXTENSIONS:
        if mask.suffix.lower() != extension.lower():
            return None
        suffix = suffix[: -len(extension)]
    if not mask.stem.endswith(suffix) or len(mask.stem) == len(suffix):
        return None
    return mask.stem[: len(mask.stem) - len(suffix)]


def select(args: argparse.Namespace, out: Path, reports: dict, notes: list) -> tuple[list[Task], int]:
    """One task per photo with a mask (or, without --masks, per photo), and how many masks have no photo.

    The photos without a mask are skipped and counted.
    """
    photos_dir = Path(args.photos)
    masks_dir = Path(args.masks) if args.masks else None
    for folder, option in ((photos_dir, "--photos"), (masks_dir, "--masks")):
        if folder is not None and not folder.is_dir():
            raise folders.DatasetError(f"{option} {folder}: no such folder")
    photo_files = images.list_images(photos_dir)
    mask_stems: dict[Path, str | None] = {}
    if masks_dir is not None:
        mask_stems = {
            path: photo_stem(path, args.mask_suffix)
            for path in images.list_images(masks_dir, extensions=MASK_EXTENSIONS)
        }
        if masks_dir.resolve() == photos_dir.resolve():  # photos and masks in one folder: the suffix tells them apart
            if not args.mask_suffix:
                raise folders.DatasetError(
                    f"--masks {masks_dir} is the --photos folder: give --mask-suffix to tell the masks from the photos"
                )
            photo_files = [path for path in photo_files if mask_stems.get(path) is None]
            mask_stems = {path: stem for path, stem in mask_stems.items() if stem is not None}
    photos, twice = by_stem(photo_files)
    if not photos and not twice:
        raise folders.DatasetError(f"--photos {photos_dir}: no photos ({', '.join(images.IMAGE_EXTENSIONS)}) in it")
    unnamed = sorted(path.name for path, stem in mask_stems.items() if stem is None)
    if unnamed:
        notes.append(
            f"{len(unnamed)} file(s) in {masks_dir} do not end with {args.mask_suffix!r}, not used: {cli.listing(unnamed)}"
        )
    masks, masks_twice = by_stem([path for path, stem in mask_stems.items() if stem is not None], mask_stems.get)
    tasks = []
    for stem in sorted(photos.keys() | twice.keys()):
        split = folders.split_of(stem) if args.split == HASH else args.split
        report = reports[split]
        report.photos += 1
        if stem in twice or stem in masks_twice:
            shared = ", ".join(str(p) for p in twice.get(stem, []) + masks_twice.get(stem, []))
            report.record("duplicate_stem", f"{shared}: the stem {stem!r} names two files, so the pair is ambiguous")
        elif masks_dir is not None and stem not in masks:
            named = f"{stem}{args.mask_suffix}" if Path(args.mask_suffix).suffix else f"{stem}{args.mask_suffix}.*"
            report.record("no_mask", f"{photos[stem]}: no mask {named} in {masks_dir}")
        else:
            image, mask = folders.pair_paths(out, split, stem)
            tasks.append(Task(split, image, mask, photo=photos[stem], source_mask=masks.get(stem)))
    orphans = sorted((masks.keys() | masks_twice.keys()) - photos.keys() - twice.keys())
    if orphans:
        names = [f"{stem}{args.mask_suffix}" for stem in orphans]
        notes.append(f"{len(orphans)} mask(s) in {masks_dir} without a photo, not used: {cli.listing(names)}")
    if args.skip_duplicates or args.held_out:
        tasks = drop_copies(tasks, [Path(folder) for folder in args.held_out or []], args.skip_duplicates, reports)
    return tasks, len(orphans)


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def drop_copies(tasks: list[Task], held_out: list[Path], skip_duplicates: bool, reports: dict) -> list[Task]:
    """The tasks less the photos that are the same file as a photo in a ``held_out`` folder or (``skip_duplicates``)
    as the photo of an earlier task; each left out is recorded. Only files of a size that occurs twice are read.

    Raises:
        folders.DatasetError: a held-out folder that is missing or holds no photos.
    """
    sizes = Counter(task.photo.stat().st_size for task in tasks)
    outside: dict[tuple[int, str], Path] = {}
    for folder in held_out:
        if not folder.is_dir():
            raise folders.DatasetError(f"--held-out {folder}: no such folder")
        found = images.list_images(folder)
        if not found:
            raise folders.DatasetError(f"--held-out {folder}: no photos ({', '.join(images.IMAGE_EXTENSIONS)}) in it")
        for path in found:
            size = path.stat().st_size
            if size in sizes:
                outside.setdefault((size, file_digest(path)), path)
    outside_sizes = {size for size, _ in outside}
    seen: dict[tuple[int, str], Path] = {}
    kept = []
    for task in tasks:
        size = task.photo.stat().st_size
        if size in outside_sizes or (skip_duplicates and sizes[size] > 1):
            key = (size, file_digest(task.photo))
            if key in outside:
                reports[task.split].record("held_out", f"{task.photo}: the same file as {outside[key]} (--held-out)")
                continue
            if skip_duplicates and key in seen:
                reports[task.split].record("duplicate_photo", f"{task.photo}: the same file as {seen[key].name}")
                continue
            seen[key] = task.photo
        kept.append(task)
    return kept


def build(args: argparse.Namespace) -> tuple[dict, list[str], int]:
    """Converts the folders and writes the split folders; returns the per-split reports, notes and masks without a photo."""
    out = Path(args.out)
    settings = {
        "dataset": "photos",
        "size": args.size,
        "photos": str(Path(args.photos).resolve()),
        "masks": str(Path(args.masks).resolve()) if args.masks else None,
        "invert": args.invert,
        **{key: getattr(args, key) for key in LATER_SETTINGS},
        "held_out": [str(Path(folder).resolve()) for folder in args.held_out] if args.held_out else None,
    }
    folders.check_manifest(out, settings, args.overwrite, LATER_SETTINGS)
    reports, notes = {split: SplitReport() for split in SPLITS}, []
    tasks, unmatched = select(args, out, reports, notes)
    folders.prepare(out, SPLITS, settings, tasks, args.overwrite)
    todo = folders.pending(tasks, reports, args.overwrite)
    rules = MaskRules(args.invert, args.instances, args.mat_key, args.max_coverage)
    folders.write_all(todo, functools.partial(write_pair, size=args.size, rules=rules), reports, args.workers)
    return reports, notes, unmatched


def flagged(reports: dict, flag: str) -> list[str]:
    """The photos written in this run whose mask was flagged with ``flag``, in order."""
    return sorted(name for r in reports.values() for name in r.flagged.get(flag, []))


def print_report(reports: dict, notes: list[str], invert: bool) -> None:
    """Per split: photos, written, already there, and every photo skipped with its reason."""
    for split, r in reports.items():
        skipped = sum(r.problems.values())
        print(f"{split}: {r.photos} photos; written {r.written}, already there {r.skipped}, skipped {skipped}")
        folders.print_problems(r, shown=None, label="skipped")
    for note in notes:
        print(f"note: {note}")
    # Inverted masks are a release's convention, so most of them look so; a few are close-ups, whose
    # person runs along most of the border too (60 of PFCN's 1,592 head-and-shoulder portraits).
    inverted, written = flagged(reports, INVERTED), sum(r.written for r in reports.values())
    if inverted and 2 * len(inverted) >= written:
        flip = "without --invert" if invert else "with --invert"
        print(
            f"note: {len(inverted)} of {written} mask(s) are person along most of the photo's border, as an inverted "
            f"mask (person = 0) would: {cli.listing(inverted, 3)}; if they are, convert again {flip} --overwrite"
        )
    full = flagged(reports, FULL_FRAME)
    if full:
        print(
            f"note: {len(full)} mask(s) cover over {FULL:.0%} of their photo: {cli.listing(full)}; a mask of the whole "
            f"frame is often wrong, and a close-up has no edge to learn: check them, or leave them out with "
            f"--max-coverage {FULL} --overwrite"
        )
    zero_one, levels = flagged(reports, ZERO_ONE), flagged(reports, LEVELS)
    if zero_one and levels:  # each mask's values are read by what it holds: a release should hold one kind
        fewer, kind = (
            (zero_one, "only 0 and 1 (1 read as person)")
            if len(zero_one) <= len(levels)
            else (levels, "values over 1 (128 or more read as person)")
        )
        print(
            f"note: {len(zero_one)} mask(s) hold only 0 and 1 and {len(levels)} larger values; the {len(fewer)} "
            f"with {kind}: {cli.listing(fewer)}; check that they are read right"
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
        help="folder of masks, images or MATLAB .mat files, any size of the photo's aspect ratio; a mask of only "
        "0 and 1 is read as 1 = person, any other as 0..255 with 128 or more person (so in a 0/1/254/255 mask "
        "254 and 255 are person, 1 is not) (default: each photo's alpha channel)",
    )
    parser.add_argument(
        "--mask-suffix",
        default="",
        metavar="SUFFIX",
        help="the mask of 00001.jpg is 00001SUFFIX.<ext>, e.g. _mask (any mask type) or _mask.png (default: the "
        "photo's stem)",
    )
    parser.add_argument(
        "--mat-key",
        default=None,
        metavar="KEY",
        help="the variable of a .mat mask to read (default: its one 2-D array; a file with several is skipped)",
    )
    parser.add_argument(
        "--instances",
        action="store_true",
        help="masks hold instance ids (0 = background, 1..N = one person each): any non-zero value is person",
    )
    parser.add_argument("--invert", action="store_true", help="masks are inverted: person = 0, background = 255")
    parser.add_argument(
        "--split",
        choices=(HASH, *SPLITS),
        default=HASH,
        help="hash: each pair's split by a hash of its stem (10%% test, 10%% val); train, val or test: every pair "
        "in that one (a release held out for validation)",
    )
    parser.add_argument(
        "--max-coverage",
        type=float,
        default=None,
        metavar="FRACTION",
        help=f"skip a mask whose person covers more than this fraction of its photo, e.g. {FULL} (a wrong mask of "
        f"the whole frame or a close-up; without it masks over {FULL:.0%}% are kept and listed in a note)",
    )
    parser.add_argument(
        "--skip-duplicates",
        action="store_true",
        help="skip a photo that is the same file (byte for byte) as another one kept: a copy under another name",
    )
    parser.add_argument(
        "--held-out",
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="folders of photos held out for validation (e.g. a release's own test photos, as published): a photo "
        "here that is the same file as one of them is skipped",
    )
    folders.add_output_arguments(parser, out="data-photos")
    args = parser.parse_args(argv)
    folders.check_output_arguments(parser, args)
    if args.mask_suffix and not args.masks:
        parser.error("--mask-suffix needs --masks")
    if args.instances and args.invert:
        parser.error("--instances and --invert cannot be used together (instance ids: 0 is the background)")
    if args.max_coverage is not None and not 0 < args.max_coverage <= 1:
        parser.error(f"--max-coverage must be a fraction over 0 and at most 1. Received: {args.max_coverage}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("photos.py", vars(args))
    try:
        reports, notes, unmatched = build(args)
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
    orphans = f"; {unmatched} mask(s) without a photo" if args.masks else ""
    print(
        f"done: {written + there} pairs in {args.out}/{{train,val,test}} (written {written}, already there {there}); "
        f"skipped {skipped}{orphans}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
