"""A grid of the views train.py trains on, each photo with its mask's outline: to look at an augmentation.

    python -m benchmarks.training_views --out /tmp/views.png -- --data-dir data-ccp data-viton \\
        --augment --composite 0.3 0.95 --backgrounds backgrounds cutouts/Bg --cutouts data-cutouts --scenes \\
        --image-size 192

Everything after ``--`` is train.py's options: the views come from the same pipeline
(``data.for_training``), so the grid shows what that recipe's network sees. The mask's outline
is drawn in green over each photo (the pixels of the mask that touch the background).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import cli
import config as train_config
import data
import folders
import images

OUTLINE = np.array([0, 255, 0], np.uint8)


def outlined(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A (h, w, 3) uint8 photo with the edge of its (h, w) 0/1 mask drawn on it."""
    inside = mask > 0.5
    padded = np.pad(inside, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inside
    out = photo.copy()
    out[inside & ~interior] = OUTLINE
    return out


def grid(tiles: list[np.ndarray], columns: int, gap: int = 2) -> np.ndarray:
    """Equal-sized (h, w, 3) tiles in rows of ``columns``, ``gap`` white pixels apart."""
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = (i // columns) * (height + gap), (i % columns) * (width + gap)
        sheet[y : y + height, x : x + width] = tile
    return sheet


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the grid, a PNG file (not overwritten without --overwrite)")
    parser.add_argument("--views", type=int, default=32, help="how many views (default: 32)")
    parser.add_argument("--columns", type=int, default=8, help="views per row (default: 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(ours)
    config, _, _ = train_config.parse_args(train_args)
    if images.Path(args.out).exists() and not args.overwrite:
        cli.error("training_views", f"{args.out} exists: give --overwrite to replace it")
        return 2
    cli.print_config("training_views", {"out": args.out, "views": args.views, **config.to_dict()})
    try:
        stream = data.for_training(config, 0).train.unbatch()
    except folders.DatasetError as e:
        cli.error("training_views", str(e))
        return 2
    tiles = [
        outlined(np.round(photo * 255).astype(np.uint8), mask[..., 0])
        for photo, mask in stream.take(args.views).as_numpy_iterator()
    ]
    images.write_atomic(args.out, images.encode(grid(tiles, args.columns), ".png"))
    print(f"wrote {args.out}: {len(tiles)} views of {tiles[0].shape[1]}x{tiles[0].shape[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
