"""Writing split folders: what the dataset converters (coco.py, ccp.py) share.

A converter decides which pairs go where and how one pair is made; this module owns the
rest, so that every converter writes the same layout

    OUT/{split}/images/<stem>.jpg    the photo
    OUT/{split}/masks/<stem>.png     its person mask, 0 or 255

and behaves the same way: a manifest (OUT/dataset.json) that refuses to mix files made with
other settings, resumable reruns that skip finished pairs, atomic writes, and a parallel
write loop with a progress bar that collects what happened per split.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

import cli
import images

# The original's filter of COCO: COCO's category id of a person, and the band of the person's
# share of the photo's area, both bounds excluded. coco.py applies it and sample.py draws its
# synthetic cases around it; they are here because a library module (sample.py) must not
# import a script (coco.py).
COCO_PERSON = 1
MIN_AREA, MAX_AREA = 0.2, 0.7

MANIFEST = "dataset.json"
KINDS = (("images", ".jpg"), ("masks", ".png"))  # sub-folder and file type of a pair's two files
WRITTEN = "written"  # the status a worker returns for a pair it wrote


def split_of(stem: str) -> str:
    """Deterministic split by file stem, the same on every run and machine: 10% test, 10% val, the rest train."""
    bucket = zlib.crc32(stem.encode()) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def add_output_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The options every converter has: --out, --size, --workers, --overwrite (checked by ``check_output_arguments``)."""
    parser.add_argument("--out", default=out, help="output folder for train/, val/, test/")
    parser.add_argument(
        "--size",
        type=int,
        default=images.DEFAULT_SIZE,
        help="output height and width, a multiple of 32; 0 keeps each photo's size",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel worker processes")
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite existing files (and remove ones no longer selected)"
    )


def check_output_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits through ``parser.error`` on a --size or --workers that cannot work."""
    try:
        images.check_size(args.size, "--size", allow_zero=True)
    except ValueError as e:
        parser.error(str(e))
    if args.workers < 1:
        parser.error(f"--workers must be at least 1. Received: {args.workers}")


class DatasetError(ValueError):
    """The dataset on disk is wrong; the message names the file or folder and says what to do.

    The one error for it: a converter's source (a COCO folder, a release, folders of photos
    and masks) and the split folders that training and evaluation read (data.py: missing,
    empty, photos without masks). A script prints it as one line and exits with 2.
    """


@dataclass
class Pair:
    """One image/mask pair to write; converters subclass it with what their worker needs."""

    split: str
    image: Path
    mask: Path


def pair_paths(out: Path, split: str, stem: str) -> tuple[Path, Path]:
    """(image, mask) paths of ``stem`` in ``split``: the layout data.py reads."""
    return out / split / "images" / f"{stem}.jpg", out / split / "masks" / f"{stem}.png"


@dataclass
class SplitReport:
    """What happened to one split's pairs; converters subclass it with their own counts."""

    written: int = 0
    skipped: int = 0  # already there from an earlier run
    problems: Counter = field(default_factory=Counter)
    problem_files: list = field(default_factory=list)

    def record(self, status: str, detail: str) -> None:
        """Counts a worker's (status, detail): 'written', or a problem named by status."""
        if status == WRITTEN:
            self.written += 1
        else:
            self.problems[status] += 1
            self.problem_files.append(detail)


def check_manifest(out: Path, settings: dict, overwrite: bool, defaults: dict | None = None) -> None:
    """Refuses to mix files made with other settings into ``out`` unless --overwrite.

    ``defaults``: settings a converter added later, with the value a manifest written
    before them stands for, so that those folders still resume.
    """
    path = out / MANIFEST
    if path.exists() and not overwrite:
        old = {**(defaults or {}), **json.loads(path.read_text())}
        changed = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if changed:
            what = ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in changed.items())
            raise DatasetError(f"{out} was written with other settings ({what}): use --overwrite or another --out")


def prune(out: Path, splits: Iterable[str], pairs: list[Pair]) -> int:
    """With --overwrite: removes pairs of an earlier run that are no longer selected."""
    wanted = {p for pair in pairs for p in (pair.image, pair.mask)}
    removed = 0
    for split in splits:
        for kind, ext in KINDS:
            for path in (out / split / kind).glob(f"*{ext}"):
                if path not in wanted:
                    path.unlink()
                    removed += 1
    return removed


def prepare(out: Path, splits: Iterable[str], settings: dict, pairs: list[Pair], overwrite: bool) -> None:
    """Creates the split folders, clears what an interrupted run left, records the settings.

    Call it after ``check_manifest`` and after the pairs are chosen, so that a run that
    fails on its input leaves an existing output folder as it was.

    Raises:
        images.WriteError: a folder or the manifest that cannot be written.
    """
    splits = list(splits)
    for split in splits:
        for kind, _ in KINDS:
            try:
                (out / split / kind).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise images.WriteError.of(f"{out / split / kind}/", e) from None
            images.remove_stale_tmp(out / split / kind)
    if overwrite:
        prune(out, splits, pairs)
    images.write_atomic(out / MANIFEST, json.dumps(settings, indent=2).encode())


def pending(pairs: list[Pair], reports: dict[str, SplitReport], overwrite: bool) -> list[Pair]:
    """The pairs still to write; counts the others as already there.

    A pair is done only when both files exist: workers write the mask first, so an
    interrupted pair has no image and is written again.
    """
    todo = []
    for pair in pairs:
        if not overwrite and pair.image.exists() and pair.mask.exists():
            reports[pair.split].skipped += 1
        else:
            todo.append(pair)
    return todo


def write_all(
    pairs: list[Pair], work: Callable[[Pair], tuple[str, str]], reports: dict[str, SplitReport], workers: int
) -> None:
    """Runs ``work`` on every pair in ``workers`` processes and records each result in its split's report.

    ``work`` must be a module-level function (or a functools.partial of one) so that it can
    be sent to the worker processes; it returns (status, detail) and never raises for a bad
    file, so that one broken photo does not stop a long run.
    """
    progress = tqdm(total=len(pairs), desc="writing", unit="img", disable=None)
    if workers == 1 or len(pairs) < 2:
        for pair in pairs:  # in this process: no start-up cost, and tests can patch it
            reports[pair.split].record(*work(pair))
            progress.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            # Chunks amortize the inter-process overhead yet keep the progress bar moving.
            chunk = max(1, min(64, len(pairs) // (4 * workers)))
            for pair, result in zip(pairs, pool.map(work, pairs, chunksize=chunk), strict=True):
                reports[pair.split].record(*result)
                progress.update()
    progress.close()


def print_problems(report: SplitReport, shown: int | None = cli.SHOWN, label: str = "problems") -> None:
    """The problem counts of one split and the first ``shown`` files named (None: all), indented under its line."""
    if report.problems:
        print(f"  {label}: {', '.join(f'{k} {v}' for k, v in report.problems.items())}")
        print("    " + cli.listing(report.problem_files, shown, sep="\n    "))
