"""Scores a model at each photo's full size, through results.py, as a user gets it.

    python -m benchmarks.full_size --model models/person_unet.keras \
        ccp=data-ccp-full/test human-seg=data-human-seg/val id-portraits=data-id/val
    python -m benchmarks.full_size --model M --compare "--no-guided-filter" SPLIT...
    python -m benchmarks.full_size --peer mediapipe --json scores.json penn-fudan=data-real/penn-fudan SPLIT...

Each SPLIT (``name=folder`` or a folder) is a split folder written at full size
(``--size 0`` of coco.py, ccp.py or photos.py): images/ and masks/; or a converter's output
folder (train/, val/, test/): all of its splits' photos together (a held-out source scored
whole). Its photos go through ``results.main(["--mask-only", ...])``, the command a user
runs, and each written alpha, thresholded at 128, is scored against the hand-made mask at
the photo's size: the IoU (``metrics.mask_iou``; the mean over photos and the pooled one)
and the boundary IoU (``metrics.boundary_iou``, bands of 2% of the photo's diagonal).
``--compare OPTIONS`` also scores results.py with those options (e.g. the alpha without the
guided filter), on the same photos. ``--peer mediapipe`` also scores MediaPipe's selfie
segmenter on the same photos with the same metrics (benchmarks/peers.py: its probability
upsampled bilinearly to the photo's size, person where >= 0.5), in columns beside ours.
Prints one markdown row per split and setting, with the processor, and the time results.py
took per photo (the whole command: reading, network, guided filter, writing; the peer's time is
its network and upsampling alone); ``--json`` writes every photo's scores (and keeps the peer's: a rerun with the
same file and photos takes them from it).

    python -m benchmarks.full_size --summarize runs/ab-* [--peer mediapipe]

prints one row per training run of benchmarks/real_photos.sh from its scores and its
CPU time; with ``--peer``, the peer's scores on the same photos beside each source (taken from
the run's full_size_val.json, else scored once and written into it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

import cli
import data
import figures
import folders
import hardware
import images
import metrics
import results
from benchmarks import peers

SCRIPT = "full_size.py"
SPLITS = ("train", "val", "test")  # a converter's output folder holds these (ccp.py, photos.py)


def parse_split(text: str) -> tuple[str, Path]:
    name, _, folder = text.rpartition("=")
    folder = Path(folder)
    return name or f"{folder.parent.name}/{folder.name}", folder


def find_photos(folder: Path) -> tuple[list[str], list[str]]:
    """The (photos, masks) of a split folder (images/, masks/), or of every split of a converter's output folder
    (train/, val/, test/, those with photos).

    Raises:
        folders.DatasetError: as ``data.find_pairs``; or two splits hold photos of the same stem.
    """
    # The splits that hold photos (a held-out source's converter may put all of them in test/).
    splits = [
        s for s in (folder / split for split in SPLITS) if (s / "images").is_dir() and images.list_images(s / "images")
    ]
    if (folder / "images").is_dir() or not splits:
        return data.find_pairs(folder)
    photos, masks = [], []
    for split in splits:
        split_photos, split_masks = data.find_pairs(split)
        photos += split_photos
        masks += split_masks
    repeated = sorted(stem for stem, n in Counter(Path(p).stem for p in photos).items() if n > 1)
    if repeated:
        raise folders.DatasetError(f"{folder}: photos of the same stem in two splits: {cli.listing(repeated)}")
    return photos, masks


def photo_list(folder: str | Path, photos: list[str]) -> str:
    """What identifies the photos scored: a digest of their paths inside ``folder``, in order."""
    names = "\n".join(os.path.relpath(p, folder) for p in photos)
    return hashlib.sha1(names.encode()).hexdigest()[:16]


def score_photo(photo: str, truth: np.ndarray, pred: np.ndarray) -> dict:
    """One photo's row: IoU, boundary IoU and the counts the pooled IoU adds up."""
    if pred.shape != truth.shape:
        raise SystemExit(f"{SCRIPT}: {photo}: alpha {pred.shape}, mask {truth.shape}")
    return {
        "photo": photo,
        "iou": metrics.mask_iou(truth, pred),
        "boundary_iou": metrics.boundary_iou(truth, pred),
        "tp": int(np.count_nonzero(truth & pred)),
        "union": int(np.count_nonzero(truth | pred)),
    }


def totals(folder: Path, photos: list[str], rows: list[dict], seconds: float, cpu_seconds: float) -> dict:
    return {
        "folder": str(folder),
        "photo_list": photo_list(folder, photos),
        "photos": len(rows),
        "iou": float(np.mean([r["iou"] for r in rows])),
        "pooled_iou": sum(r["tp"] for r in rows) / max(1, sum(r["union"] for r in rows)),
        "boundary_iou": float(np.mean([r["boundary_iou"] for r in rows])),
        "ms_per_photo": 1000 * seconds / len(rows),
        "cpu_ms_per_photo": 1000 * cpu_seconds / len(rows),
        "per_photo": rows,
    }


def score_split(model: str, folder: Path, options: list[str], keep: bool = False) -> dict:
    """results.py --mask-only on a split's photos, scored against its masks at full size.

    ``keep``: each photo's row also holds thumbnails of the photo, its mask and the alpha (for ``--cases``).
    """
    photo_paths, mask_paths = find_photos(folder)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--model", model, "--mask-only", "--out-dir", tmp, "--figure", f"{tmp}/figure.png", *options]
        start, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            status = results.main([*argv, *photo_paths])
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        if status != 0:
            raise SystemExit(f"{SCRIPT}: results.py failed on {folder} (exit {status})")
        rows = []
        for photo, mask in zip(photo_paths, mask_paths, strict=True):
            truth = images.read_mask(mask).astype(bool)
            alpha = images.read_gray(Path(tmp) / f"{Path(photo).stem}.png")
            rows.append(score_photo(photo, truth, alpha >= 128))
            if keep:
                rows[-1]["thumbs"] = [
                    images.thumbnail(a) for a in (images.read_rgb(photo), truth.astype(np.uint8), alpha)
                ]
    return totals(folder, photo_paths, rows, seconds, cpu_seconds)


class Peer:
    """The peer scored beside our model: loaded when first needed, its scores kept per (folder, photo list, model).

    Args:
        name: the peer (``peers.MEDIAPIPE``).
        model: its model file (default: the one ``peers.fetch_mediapipe`` keeps in the cache).
    """

    def __init__(self, name: str, model: Path | None = None):
        self.name, self.model = name, model
        if model is not None and not model.is_file():
            raise peers.PeerError(f"{model}: no such model file")
        # The scores are of one model file: the pinned one, or the file given.
        self.sha256 = peers.sha256_of(model) if model else peers.MEDIAPIPE_SHA256
        self._segmenter = None
        self.known = {}  # (folder, photo list) -> scores, from the JSON files read and the photos scored
        self.computed = self.reused = 0

    @property
    def label(self) -> str:
        return self.segmenter.name if self._segmenter else peers.MediaPipeSelfie.name

    @property
    def segmenter(self) -> peers.MediaPipeSelfie:
        if self._segmenter is None:
            self._segmenter = peers.load_peer(self.name, self.model)
            if self._segmenter.sha256 != self.sha256:
                raise peers.PeerError(
                    f"{self._segmenter.path}: SHA-256 {self._segmenter.sha256}, expected {self.sha256}"
                )
        return self._segmenter

    def key(self, folder: str | Path, photos: str) -> tuple:
        return os.path.normpath(folder), photos

    def remember(self, report: dict) -> None:
        """Keeps the scores of this peer and model file that a report (a --json file) holds."""
        for entry in report.values():
            if entry.get("peer") == self.name and entry.get("model_sha256") == self.sha256:
                self.known[self.key(entry["folder"], entry["photo_list"])] = entry

    def scores(self, folder: Path, expected: str | None = None) -> dict:
        """The peer's scores on the photos of ``folder``: kept ones if it scored the same photos, else scored now.

        ``expected``: the photo list our model was scored on; the folder must still hold exactly those photos.
        """
        photos, masks = find_photos(folder)
        listed = photo_list(folder, photos)
        if expected is not None and listed != expected:
            raise folders.DatasetError(f"{folder}: not the photos our model was scored on (the folder changed since)")
        kept = self.known.get(self.key(folder, listed))
        if kept is not None:
            self.reused += 1
            return kept
        segmenter = self.segmenter
        rows, seconds, cpu_seconds = [], 0.0, 0.0
        bar = tqdm(
            zip(photos, masks, strict=True), total=len(photos), desc=f"{self.name} {folder}", unit="photo", disable=None
        )
        for photo, mask in bar:
            rgb, truth = images.read_rgb(photo), images.read_mask(mask).astype(bool)
            start, cpu = time.perf_counter(), time.process_time()
            probability = segmenter.probability(rgb)
            seconds += time.perf_counter() - start
            cpu_seconds += time.process_time() - cpu
            rows.append(score_photo(photo, truth, probability >= metrics.THRESHOLD))
        scored = {"peer": self.name, "model_sha256": self.sha256} | totals(folder, photos, rows, seconds, cpu_seconds)
        self.known[self.key(folder, listed)] = scored
        self.computed += 1
        return scored


def read_report(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise folders.DatasetError(f"{path}: cannot read its scores ({getattr(e, 'strerror', None) or e})") from None


def scored_folder(entry: dict) -> str:
    """The folder a report's entry was scored on (older reports name only the photos: their split folder)."""
    if "folder" in entry:
        return entry["folder"]
    parents = {str(Path(r["photo"]).parent.parent) for r in entry["per_photo"]}
    return parents.pop() if len(parents) == 1 else ""


def summarize(run_dirs: list[Path], peer: Peer | None = None) -> None:
    """One row per training run (RUN/full_size_val.json, RUN/time.txt): IoU / boundary IoU per source, cost.

    With ``peer``, its IoU / boundary IoU on each source's same photos beside ours: from the report, or
    from another run's report of the same photos, else scored once and written into the report.
    """
    rows = []
    for run in run_dirs:
        scored = run / "full_size_val.json"
        if not scored.is_file():
            continue
        report = read_report(scored)
        wall, user, system = (float(v) for v in (run / "time.txt").read_text().split())
        rows.append((run.name, scored, report, wall, user + system))
        if peer:
            peer.remember(report)
    names = [key[: -len(" default")] for key in rows[0][2] if key.endswith(" default")] if rows else []
    if peer:
        for _, path, report, _, _ in rows:
            added = False
            for n in names:
                ours = report[f"{n} default"]
                folder = scored_folder(ours)
                expected = ours.get("photo_list") or photo_list(folder, [r["photo"] for r in ours["per_photo"]])
                theirs = report.get(f"{n} {peer.name}", {})
                if (theirs.get("model_sha256"), theirs.get("photo_list")) != (peer.sha256, expected):
                    report[f"{n} {peer.name}"] = peer.scores(Path(folder), expected)
                    added = True
            if added:
                images.write_atomic(path, json.dumps(report, indent=2).encode())
    print(f"{hardware.cpu_info().describe()}; full size, through results.py, val splits; IoU / boundary IoU")
    if peer:
        print(f"beside each source: {peer.label} ({peer.name}) on the same photos")
    columns = [c for n in names for c in ([n, f"{n} ({peer.label})"] if peer else [n])]
    means = ["mean", f"mean ({peer.label})"] if peer else ["mean"]
    print(f"\n| run | {' | '.join(columns + means)} | training CPU min (wall) | ms per photo |")
    print("|---|" + "---|" * (len(columns) + len(means) + 2))

    def cell(entry):
        return f"{entry['iou']:.3f} / {entry['boundary_iou']:.3f}"

    for name, _, report, wall, cpu in rows:
        keys = [[f"{n} default", f"{n} {peer.name}"] if peer else [f"{n} default"] for n in names]
        cells = [cell(report[k]) for pair in keys for k in pair]
        mean = [sum(report[pair[i]]["iou"] for pair in keys) / len(keys) for i in range(len(means))]
        speed = sum(report[f"{n} default"]["ms_per_photo"] for n in names) / len(names)
        print(
            f"| {name} | {' | '.join(cells)} | {' | '.join(f'{m:.3f}' for m in mean)} | "
            f"{cpu / 60:.0f} ({wall / 60:.0f}) | {speed:.0f} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter)
    parser.add_argument("splits", nargs="+", help="name=folder (or folder) of a full-size split (--summarize: runs)")
    parser.add_argument(
        "--model", default=str(results.SHIPPED_MODEL), help="the .keras model (default: the shipped one)"
    )
    parser.add_argument(
        "--compare", action="append", default=[], metavar="OPTIONS", help="also score results.py with these options"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every photo's scores here")
    parser.add_argument("--size", type=int, default=None, help="results.py --size (default: results.py's choice)")
    parser.add_argument("--cases", type=Path, default=None, help="draw each split's best and two worst photos here")
    parser.add_argument(
        "--peer",
        choices=[peers.MEDIAPIPE],
        default=None,
        help="also score this model on the same photos, beside ours (mediapipe: MediaPipe's selfie segmenter, "
        f"fetched from the {peers.MEDIAPIPE_WHEEL} wheel with pip the first time)",
    )
    parser.add_argument(
        "--mediapipe-model",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the peer's {peers.MEDIAPIPE_FILE} (implies --peer mediapipe; default: fetched into {peers.cache_dir()})",
    )
    parser.add_argument(
        "--summarize", action="store_true", help="the arguments are training runs: print one row per run"
    )
    args = parser.parse_args(argv)
    if args.mediapipe_model:
        args.peer = peers.MEDIAPIPE
    try:
        peer = Peer(args.peer, args.mediapipe_model) if args.peer else None
        if args.summarize:
            summarize([Path(a) for a in args.splits], peer)
            return 0
        return score(args, peer)
    except (peers.PeerError, folders.DatasetError, images.ImageReadError) as e:
        cli.error(SCRIPT, str(e))
        return 2


def score(args: argparse.Namespace, peer: Peer | None) -> int:
    """The splits through results.py (and the peer): prints the table, writes --json and --cases."""
    splits = [parse_split(text) for text in args.splits]
    for _, folder in splits:
        find_photos(folder)  # a missing or empty folder stops here, before any scoring
    previous = read_report(args.json) if args.json and args.json.is_file() and peer else {}
    if peer:
        peer.remember(previous)
        if any(peer.key(f, photo_list(f, find_photos(f)[0])) not in peer.known for _, f in splits):
            peer.segmenter  # noqa: B018 (loaded now: a model that cannot run stops here, before any scoring)
    size = ["--size", str(args.size)] if args.size else []
    settings = [("default", size)] + [(options, size + shlex.split(options)) for options in args.compare]
    described = f"; peer {peer.label} ({peers.MEDIAPIPE_FILE}, SHA-256 {peer.sha256[:12]})" if peer else ""
    print(f"{hardware.cpu_info().describe()}; model {args.model}{described}")
    header = "| split | results.py | photos | IoU (mean) | IoU (pooled) | boundary IoU | ms per photo (CPU) |"
    if peer:
        header += f" {peer.label} IoU (mean) | {peer.label} boundary IoU | {peer.label} ms per photo (CPU) |"
    print(f"\n{header}\n|" + "---|" * (header.count("|") - 1))
    report = {}
    cases = []
    for name, folder in splits:
        theirs = None
        if peer:
            theirs = report[f"{name} {peer.name}"] = peer.scores(folder)
        for label, options in settings:
            s = score_split(args.model, folder, options, keep=bool(args.cases) and label == "default")
            if args.cases and label == "default":
                ranked = sorted(s["per_photo"], key=lambda r: r["iou"])
                cases += [(name, dict(r)) for r in [ranked[-1], *ranked[:2]]]
                for r in s["per_photo"]:
                    r.pop("thumbs", None)
            report[f"{name} {label}"] = s
            line = (
                f"| {name} | {label} | {s['photos']} | {s['iou']:.3f} | {s['pooled_iou']:.3f} | "
                f"{s['boundary_iou']:.3f} | {s['ms_per_photo']:.0f} ({s['cpu_ms_per_photo']:.0f}) |"
            )
            if theirs:
                line += (
                    f" {theirs['iou']:.3f} | {theirs['boundary_iou']:.3f} | "
                    f"{theirs['ms_per_photo']:.0f} ({theirs['cpu_ms_per_photo']:.0f}) |"
                )
            print(line, flush=True)
    if args.json:
        images.write_atomic(args.json, json.dumps(report, indent=2).encode())
    if cases:
        photos, masks, alphas = zip(*(r["thumbs"] for _, r in cases), strict=True)
        titles = [
            f"{name} {Path(r['photo']).stem}: IoU {r['iou']:.2f}, boundary {r['boundary_iou']:.2f}" for name, r in cases
        ]
        # The alpha is at the thumbnail's size already: plot_predictions upsamples it by 1.
        figures.plot_predictions(
            list(photos), [a.astype(np.float32) / 255 for a in alphas], args.cases, list(masks), titles
        )
        print(f"wrote {args.cases}: each split's best and two worst photos")
    ours = [report[f"{name} default"] for name, _ in splits]
    summary = f"\n{len(splits)} splits, mean IoU / boundary IoU over them: ours {mean_cells(ours)}"
    if peer:
        theirs = [report[f"{name} {peer.name}"] for name, _ in splits]
        kept = f", {peer.reused} kept from {args.json}" if peer.reused else ""
        summary += f"; {peer.label} {mean_cells(theirs)} ({peer.computed} splits scored{kept})"
    print(summary)
    return 0


def mean_cells(entries: list[dict]) -> str:
    return f"{np.mean([e['iou'] for e in entries]):.3f} / {np.mean([e['boundary_iou'] for e in entries]):.3f}"


if __name__ == "__main__":
    sys.exit(main())
