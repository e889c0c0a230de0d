"""Clean edges, before and after: docs/edges.png, and the edge error they remove on real photos.

    python -m benchmarks.edges_figure /path/to/ccp-raw /path/to/ccp-128
    python -m benchmarks.edges_figure /path/to/ccp-raw /path/to/ccp-128 --model runs/x/best.keras --stem 0088

Uses the Clothing Co-Parsing photos (Yang, Luo and Lin, CVPR 2014; Apache-2.0): the full-size
photos of ccp-raw and the 128x128 hand-made person masks of ccp-128's test split. A photo's
alpha is its mask as a perfect 128x128 model would give it, upsampled to the photo as
results.py does (compose.alpha_map), or with --model that model's prediction.

1. The figure: the photo, then its cutout laid on a colour unlike the old background,
   zoomed on an edge, without (``--no-refine``) and with compose.estimate_foreground.
2. The numbers (``--pairs N``): N test photos each laid, with its soft alpha, over another
   test photo, so that the true foreground is known (the photo's colours carried a little
   past the person's outline); then the mean error over the soft edge of a composite on
   magenta, from the photo's own colours and from the estimate, against the true composite.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

import compose
import figures
import images
import inference

NEW_BACKGROUND = (40, 90, 220)  # blue: unlike the pale streets and skies of these photos
MAGENTA = (255, 0, 255)


def test_stems(ccp_128: Path) -> list[str]:
    """The stems of ccp-128's test split, in order."""
    return sorted(p.stem for p in (ccp_128 / "test" / "masks").glob("*.png"))


def soft_alpha(ccp_raw: Path, ccp_128: Path, stem: str, predictor=None) -> tuple[np.ndarray, np.ndarray]:
    """(full-size photo, its uint8 alpha): the 128x128 mask (or a model's prediction) upsampled."""
    photo = images.read_rgb(
        ccp_raw / "photos" / f"{stem}.jpg", apply_exif=False
    )  # as ccp.py: masks index the stored pixels
    if predictor is None:
        prob = images.read_mask(ccp_128 / "test" / "masks" / f"{stem}.png").astype(np.float32)
    else:
        prob = predictor(images.squash(photo, predictor.image_size)[None])[0]
    return photo, compose.alpha_map(prob, *photo.shape[:2])


def composite(colour: np.ndarray, alpha: np.ndarray, background) -> np.ndarray:
    """colour * alpha + background * (1 - alpha), as float32."""
    a = alpha[..., None] / 255.0
    return colour.astype(np.float32) * a + np.asarray(background, np.float32) * (1 - a)


def zoom_window(alpha: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of a size x size window on the edge of the person's head: its topmost soft row."""
    rows = np.flatnonzero((alpha > 0).any(axis=1))
    top = int(rows[0]) if rows.size else 0
    cols = np.flatnonzero(alpha[min(top + size // 3, alpha.shape[0] - 1)] > 0)
    centre = int(cols.mean()) if cols.size else alpha.shape[1] // 2
    height, width = alpha.shape
    return max(0, min(top - size // 4, height - size)), max(0, min(centre - size // 2, width - size))


def draw_figure(photo: np.ndarray, alpha: np.ndarray, stem: str, zoom: int, path: Path) -> None:
    """photo with the zoom box | zoomed cutout on NEW_BACKGROUND, --no-refine | the same, refined."""
    top, left = zoom_window(alpha, zoom)
    window = np.s_[top : top + zoom, left : left + zoom]
    panels = [
        composite(colour, alpha, NEW_BACKGROUND)[window]
        for colour in (photo, compose.estimate_foreground(photo, alpha))
    ]
    fig = figures.new_figure((10.5, 4.2))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [photo.shape[1] / photo.shape[0], 1, 1]})
    shown = photo.copy()
    cv2.rectangle(shown, (left, top), (left + zoom - 1, top + zoom - 1), (255, 255, 0), max(2, photo.shape[0] // 200))
    axes[0].imshow(shown)
    axes[0].set_title(f"Clothing Co-Parsing {stem}", fontsize=10)
    titles = ("--no-refine: the old background's fringe", "default: estimated person colour")
    for ax, panel, title in zip(axes[1:], panels, titles, strict=True):
        ax.imshow(np.clip(panel + 0.5, 0, 255).astype(np.uint8), interpolation="nearest")
        ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    figures.finish(fig, path)


def true_foreground(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The photo with its person's colours carried past the outline (alpha 128) across the soft edge, inpainted."""
    outside = (alpha < 128).astype(np.uint8)
    reach = round(compose.soft_edge_width(alpha, np.count_nonzero((alpha > 0) & (alpha < 255)))) + 2
    ring = cv2.dilate(1 - outside, np.ones((3, 3), np.uint8), iterations=reach) & outside
    return cv2.inpaint(photo, ring, 5, cv2.INPAINT_TELEA).astype(np.float32)


def edge_errors(ccp_raw: Path, ccp_128: Path, stems: list[str], predictor=None) -> dict:
    """Mean error over the soft edge of composites on magenta, unrefined and refined, and the refinement's time."""
    found = {"unrefined": [], "refined": [], "seconds": [], "pixels": []}
    for stem, other in zip(stems, stems[1:] + stems[:1], strict=True):
        photo, alpha = soft_alpha(ccp_raw, ccp_128, stem, predictor)
        fg = true_foreground(photo, alpha)
        old = cv2.resize(images.read_rgb(ccp_raw / "photos" / f"{other}.jpg"), photo.shape[1::-1]).astype(np.float32)
        mixed = np.clip(composite(fg, alpha, old) + 0.5, 0, 255).astype(np.uint8)  # what a camera would see
        found["pixels"].append(alpha.size)
        start = time.perf_counter()
        refined = compose.estimate_foreground(mixed, alpha)
        found["seconds"].append(time.perf_counter() - start)
        band, truth = (alpha > 0) & (alpha < 255), composite(fg, alpha, MAGENTA)
        for name, colour in (("unrefined", mixed), ("refined", refined)):
            found[name].append(float(np.abs(composite(colour, alpha, MAGENTA) - truth)[band].mean()))
    return {name: float(np.mean(values)) for name, values in found.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ccp_raw", type=Path, help="the Clothing Co-Parsing release (photos/)")
    parser.add_argument("ccp_128", type=Path, help="ccp.py's 128x128 folders (test/masks/)")
    parser.add_argument("--stem", default="0076", help="the test photo of the figure")
    parser.add_argument("--zoom", type=int, default=100, help="side of the zoomed window, in photo pixels")
    parser.add_argument("--model", default=None, help="a .keras model: its predictions instead of the masks")
    parser.add_argument("--pairs", type=int, default=40, help="test photos in the edge-error measurement (0: none)")
    parser.add_argument("--out", type=Path, default=Path("docs/edges.png"), help="the figure")
    args = parser.parse_args(argv)

    predictor = None
    if args.model:
        model = inference.load_model(args.model)
        predictor = inference.Predictor(model, inference.model_size(model))
    photo, alpha = soft_alpha(args.ccp_raw, args.ccp_128, args.stem, predictor)
    draw_figure(photo, alpha, args.stem, args.zoom, args.out)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB): photo {args.stem}, {photo.shape[1]}x{photo.shape[0]}"
    )
    if args.pairs:
        stems = test_stems(args.ccp_128)
        step = max(1, len(stems) // args.pairs)
        chosen = stems[::step][: args.pairs]
        found = edge_errors(args.ccp_raw, args.ccp_128, chosen, predictor)
        print(
            f"{len(chosen)} test photos, each over the next: mean error over the soft edge of a composite on magenta "
            f"(grey levels): --no-refine {found['unrefined']:.2f}, refined {found['refined']:.2f} "
            f"(x{found['refined'] / found['unrefined']:.2f}); estimate_foreground {found['seconds'] * 1e3:.1f} ms "
            f"per photo of {found['pixels'] / 1e6:.2f} megapixels"
        )


if __name__ == "__main__":
    main()
