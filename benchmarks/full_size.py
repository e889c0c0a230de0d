"""Scores a model at each photo's full size, through results.py, as a user gets it.

    python -m benchmarks.full_size --model models/person_unet.keras \
        ccp=data-ccp-full/test human-seg=data-human-seg/val id-portraits=data-id/val
    python -m benchmarks.full_size --model M --compare "--no-guided-filter" SPLIT...

Each SPLIT (``name=folder`` or a folder) is a split folder written at full size
(``--size 0`` of coco.py, ccp.py or photos.py): images/ and masks/. Its photos go through
``results.main(["--mask-only", ...])``, the command a user runs, and each written alpha,
thresholded at 128, is scored against the hand-made mask at the photo's size: the IoU
(``metrics.mask_iou``; the mean over photos and the pooled one) and the boundary IoU
(``metrics.boundary_iou``, bands of 2% of the photo's diagonal). ``--compare OPTIONS`` also
scores results.py with those options (e.g. the alpha without the guided filter), on the
same photos. Prints one markdown row per split and setting, with the processor, and the
time results.py took per photo; ``--json`` writes every photo's scores.

    python -m benchmarks.full_size --summarize runs/ab-*

prints one row per training run of benchmarks/real_photos.sh from its scores and its
CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import data
import figures
import hardware
import images
import metrics
import results


def parse_split(text: str) -> tuple[str, Path]:
    name, _, folder = text.rpartition("=")
    folder = Path(folder)
    return name or f"{folder.parent.name}/{folder.name}", folder


def score_split(model: str, folder: Path, options: list[str], keep: bool = False) -> dict:
    """results.py --mask-only on a split's photos, scored against its masks at full size.

    ``keep``: each photo's row also holds thumbnails of the photo, its mask and the alpha (for ``--cases``).
    """
    photo_paths, mask_paths = data.find_pairs(folder)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--model", model, "--mask-only", "--out-dir", tmp, "--figure", f"{tmp}/figure.png", *options]
        start, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            status = results.main([*argv, *photo_paths])
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        if status != 0:
            raise SystemExit(f"full_size.py: results.py failed on {folder} (exit {status})")
        rows = []
        for photo, mask in zip(photo_paths, mask_paths, strict=True):
            truth = images.read_mask(mask).astype(bool)
            pred = images.read_gray(Path(tmp) / f"{Path(photo).stem}.png") >= 128
            if pred.shape != truth.shape:
                raise SystemExit(f"full_size.py: {photo}: alpha {pred.shape}, mask {truth.shape}")
            rows.append(
                {
                    "photo": photo,
                    "iou": metrics.mask_iou(truth, pred),
                    "boundary_iou": metrics.boundary_iou(truth, pred),
                    "tp": int(np.count_nonzero(truth & pred)),
                    "union": int(np.count_nonzero(truth | pred)),
                }
            )
            if keep:
                alpha = images.read_gray(Path(tmp) / f"{Path(photo).stem}.png")
                rows[-1]["thumbs"] = [
                    images.thumbnail(a) for a in (images.read_rgb(photo), truth.astype(np.uint8), alpha)
                ]
    return {
        "photos": len(rows),
        "iou": float(np.mean([r["iou"] for r in rows])),
        "pooled_iou": sum(r["tp"] for r in rows) / max(1, sum(r["union"] for r in rows)),
        "boundary_iou": float(np.mean([r["boundary_iou"] for r in rows])),
        "ms_per_photo": 1000 * seconds / len(rows),
        "cpu_ms_per_photo": 1000 * cpu_seconds / len(rows),
        "per_photo": rows,
    }


def summarize(run_dirs: list[Path]) -> None:
    """One row per training run (RUN/full_size_val.json, RUN/time.txt): IoU / boundary IoU per source, cost."""
    rows = []
    for run in run_dirs:
        scored = run / "full_size_val.json"
        if not scored.is_file():
            continue
        report = json.loads(scored.read_text())
        wall, user, system = (float(v) for v in (run / "time.txt").read_text().split())
        rows.append((run.name, report, wall, user + system))
    names = [key[: -len(" default")] for key in rows[0][1] if key.endswith(" default")] if rows else []
    print(f"{hardware.cpu_info().describe()}; full size, through results.py, val splits; IoU / boundary IoU")
    print(f"\n| run | {' | '.join(names)} | mean | training CPU min (wall) | ms per photo |")
    print("|---|" + "---|" * (len(names) + 3))
    for name, report, wall, cpu in rows:
        cells = [f"{report[f'{n} default']['iou']:.3f} / {report[f'{n} default']['boundary_iou']:.3f}" for n in names]
        mean = sum(report[f"{n} default"]["iou"] for n in names) / len(names)
        speed = sum(report[f"{n} default"]["ms_per_photo"] for n in names) / len(names)
        print(f"| {name} | {' | '.join(cells)} | {mean:.3f} | {cpu / 60:.0f} ({wall / 60:.0f}) | {speed:.0f} |")


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--summarize":
        summarize([Path(a) for a in argv[1:]])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", nargs="+", help="name=folder (or folder) of a full-size split")
    parser.add_argument(
        "--model", default=str(results.SHIPPED_MODEL), help="the .keras model (default: the shipped one)"
    )
    parser.add_argument(
        "--compare", action="append", default=[], metavar="OPTIONS", help="also score results.py with these options"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every photo's scores here")
    parser.add_argument("--size", type=int, default=None, help="results.py --size (default: results.py's choice)")
    parser.add_argument("--cases", type=Path, default=None, help="draw each split's best and two worst photos here")
    args = parser.parse_args(argv)
    size = ["--size", str(args.size)] if args.size else []
    settings = [("default", size)] + [(options, size + shlex.split(options)) for options in args.compare]
    print(f"{hardware.cpu_info().describe()}; model {args.model}")
    print("\n| split | results.py | photos | IoU (mean) | IoU (pooled) | boundary IoU | ms per photo (CPU) |")
    print("|---|---|---|---|---|---|---|")
    report = {}
    cases = []
    for text in args.splits:
        name, folder = parse_split(text)
        for label, options in settings:
            s = score_split(args.model, folder, options, keep=bool(args.cases) and label == "default")
            if args.cases and label == "default":
                ranked = sorted(s["per_photo"], key=lambda r: r["iou"])
                cases += [(name, dict(r)) for r in [ranked[-1], *ranked[:2]]]
                for r in s["per_photo"]:
                    r.pop("thumbs", None)
            report[f"{name} {label}"] = s
            print(
                f"| {name} | {label} | {s['photos']} | {s['iou']:.3f} | {s['pooled_iou']:.3f} | "
                f"{s['boundary_iou']:.3f} | {s['ms_per_photo']:.0f} ({s['cpu_ms_per_photo']:.0f}) |",
                flush=True,
            )
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
