"""Scores a finished run on real photos: the test split, its upper-body crops, a figure.

    python -m benchmarks.real_report runs/ccp-original --data-dir ../shared/realdata/ccp-128

Evaluates RUN/best.keras on DATA/test and on upper-body crops of the same photos (the top
half of each photo and of its mask, squashed back to the model's size: a half-body
portrait like the ones a user cuts out), draws RUN/test_figure.png with a dozen test
photos, writes RUN/real_report.json and prints one row of the README's results table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

import data
import figures
import images
import inference
import serving
from config import read_config


def write_upper_body_split(test_dir: Path, out_dir: Path, size: int) -> int:
    """The top half of every test photo and mask, squashed to size x size; returns the count."""
    image_paths, mask_paths = data.find_pairs(test_dir)
    for kind in ("images", "masks"):
        (out_dir / kind).mkdir(parents=True, exist_ok=True)
    for image_path, mask_path in zip(image_paths, mask_paths, strict=True):
        photo = images.read_rgb(image_path)
        mask = (cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
        top = photo.shape[0] // 2
        stem = Path(image_path).stem
        (out_dir / "images" / f"{stem}.png").write_bytes(images.encode(images.squash(photo[:top], size), ".png"))
        mask = images.squash_mask(mask[:top], size) * 255
        (out_dir / "masks" / f"{stem}.png").write_bytes(images.encode(mask, ".png"))
    return len(image_paths)


def plot_cases(predictor, per_image: list, path: Path, best: int = 3, worst: int = 5) -> None:
    """A figure of the best- and worst-scoring photos of an evaluation (photo, mask, prediction, cutout)."""
    ranked = sorted(per_image, key=lambda row: row[2])
    chosen = [*ranked[::-1][:best], *ranked[:worst]]
    photos, probs, masks, titles = [], [], [], []
    for image_path, mask_path, iou in chosen:
        photo, mask = data.load_pair(image_path, mask_path, predictor.image_size)
        photos.append(images.thumbnail(images.read_rgb(image_path)))
        probs.append(predictor(photo[None])[0])
        masks.append(mask[..., 0])
        titles.append(f"{Path(image_path).stem}: IoU {iou:.2f}")
    figures.plot_predictions(photos, probs, path=path, masks=masks, titles=titles)


def ship(model, size: int, path: Path) -> None:
    """The model as results.py loads it by default: float32, its input fixed at size x size.

    A fixed input size tells results.py and export.py the size the model was trained at.
    serving.fixed_size copies any U-net (the original or the encoder U-net), as export.py --format keras does.
    """
    fixed = serving.fixed_size(inference.as_float32(model), size)
    tmp = images.tmp_name(path, keep_suffix=True)  # Keras saves by the suffix
    path.parent.mkdir(parents=True, exist_ok=True)
    fixed.save(tmp)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/realdata/ccp-128"))
    parser.add_argument("--rows", type=int, default=12, help="test photos in the figure")
    parser.add_argument("--cases", type=Path, default=None, help="also draw the best and worst test photos here")
    parser.add_argument(
        "--ship", type=Path, default=None, help="also write best.keras here as a float32 model of fixed input size"
    )
    args = parser.parse_args(argv)
    run, test_dir = args.run_dir, args.data_dir / "test"
    options = read_config(run)  # older runs' config.json call the filter scale "width"
    size = options.image_size
    predictor = inference.Predictor(inference.load_model(run / "best.keras"), size)
    test = inference.evaluate(predictor, test_dir, batch_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        write_upper_body_split(test_dir, Path(tmp), size)
        upper = inference.evaluate(predictor, tmp, batch_size=32)
        if args.cases:  # the crops live in tmp
            plot_cases(predictor, upper["per_image"], args.cases.with_name(args.cases.stem + "_upper.png"), 2, 4)
    figures.plot_split(predictor, test_dir, run / "test_figure.png", rows=args.rows)
    if args.cases:
        plot_cases(predictor, test["per_image"], args.cases)
    if args.ship:
        ship(predictor.model, size, args.ship)
    wall = (run / "wall_seconds").read_text().strip() if (run / "wall_seconds").exists() else None
    history = (run / "history.csv").read_text().splitlines()
    report = {
        "run": str(run),
        "test": {k: test[k] for k in ("accuracy", "iou", "seed_iou", "images")},
        "upper_body": {k: upper[k] for k in ("accuracy", "iou", "seed_iou", "images")},
        "wall_minutes": round(int(wall) / 60, 1) if wall else None,
        "epochs": len(history) - 1,
        "best_epoch": json.loads((run / "state.json").read_text())["best_epoch"],
    }
    images.write_atomic(run / "real_report.json", json.dumps(report, indent=2).encode())
    t, u = report["test"], report["upper_body"]
    print(
        f"| {run.name} | {t['accuracy']:.3f} | {t['iou']:.3f} | {t['seed_iou']:.3f} | {u['iou']:.3f} "
        f"| {report['wall_minutes']} min | best epoch {report['best_epoch']} of {report['epochs']} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
