"""The figures: predictions beside photos (as the original's grid), a split's first photos, learning curves.

Figures are drawn on matplotlib ``Figure`` objects without pyplot, so drawing one never
changes the global backend (a notebook keeps its own); only ``show=True`` uses pyplot.
PNG files are written under a temporary name and renamed (``images.write_atomic``). The
curves' data, a run's history.csv, is read and written here too.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import compose
import data
import images

CURVES = ("loss", "accuracy", "seed_iou", "iou")  # the metrics of history.csv, each a panel
HISTORY_FIELDS = ["epoch", *CURVES, *(f"val_{m}" for m in CURVES), "learning_rate", "seconds"]
DPI = 80


def new_figure(figsize: tuple, show: bool = False):
    """A matplotlib Figure: a pyplot one only when it is to be shown in a window."""
    if show:
        import matplotlib.pyplot as plt  # only to show: importing pyplot picks a GUI backend

        return plt.figure(figsize=figsize)
    return Figure(figsize=figsize)


def finish(fig, path: str | Path | None, show: bool = False):
    """Writes ``fig`` as a PNG to ``path`` atomically (if given), shows it (if asked); returns it."""
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="png")
        images.write_atomic(path, buffer.getvalue())
    if show:
        import matplotlib.pyplot as plt  # only to show: importing pyplot picks a GUI backend

        plt.show()
        plt.close(fig)
    return fig


def checkerboard(height: int, width: int, cell: int = 8) -> np.ndarray:
    """(height, width, 1) light-grey squares: what a transparent background looks like."""
    yy, xx = np.mgrid[:height, :width]
    light = ((yy // cell + xx // cell) % 2).astype(np.float32)
    return (0.75 + 0.2 * light)[..., None]


def plot_predictions(photos, probs, path=None, masks=None, titles=None, show: bool = False):
    """One row per photo: photo | [true mask] | predicted mask | cutout, like the original's grid.

    Args:
        photos: RGB uint8 arrays (any sizes; thumbnails are fine).
        probs: (size, size) probability maps, one per photo.
        path: PNG file to write (written to a temporary name, then renamed).
        masks: optional true masks (0/1), shown in a column of their own.
        titles: optional text beside each row's photo.
        show: also open a window (needs a screen).

    Returns:
        The matplotlib Figure.
    """
    columns = ["photo", *(["true mask"] if masks is not None else []), "predicted mask", "cutout"]
    fig = new_figure((2.6 * len(columns), 2.6 * len(photos)), show)
    axes = fig.subplots(len(photos), len(columns), squeeze=False)
    for r, (photo, prob) in enumerate(zip(photos, probs, strict=True)):
        height, width = photo.shape[:2]
        alpha = compose.alpha_map(prob, height, width).astype(np.float32)[..., None] / 255.0
        panels = [photo]
        if masks is not None:
            panels.append(compose.alpha_map(np.asarray(masks[r], np.float32).squeeze(), height, width) / 255.0)
        panels.append(alpha[..., 0])
        panels.append(photo.astype(np.float32) / 255.0 * alpha + checkerboard(height, width) * (1 - alpha))
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    fig.tight_layout()
    return finish(fig, path, show)


def plot_split(predictor, split_dir: str | Path, path: str | Path | None = None, rows: int = 12):
    """``plot_predictions`` of the first ``rows`` readable pairs of a split folder, true masks included.

    Args:
        predictor: an ``inference.Predictor``.
        split_dir: a folder with images/ and masks/.
        path: PNG file to write.
        rows: at most this many photos.
    """
    photos, masks = [], []
    for image_path, mask_path in zip(*data.find_pairs(split_dir), strict=True):
        if len(photos) == rows:
            break
        try:
            photo, mask = data.load_pair(image_path, mask_path, predictor.image_size)
        except images.ImageReadError:
            continue  # the training pipeline skips it too
        photos.append(photo)
        masks.append(mask[..., 0])
    probs = list(predictor(np.stack(photos)))
    return plot_predictions(photos, probs, path, masks=masks)


def read_history(history_csv: str | Path) -> list[dict]:
    """The rows of a run's history.csv as floats (an empty list if there is none yet)."""
    path = Path(history_csv)
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]


def append_history(history_csv: str | Path, row: dict) -> None:
    """history.csv with ``row`` as its last epoch (rows of later epochs, from before a resume, dropped)."""
    rows = [r for r in read_history(history_csv) if r["epoch"] < row["epoch"]] + [row]
    out = io.StringIO()
    sources = sorted({k for r in rows for k in r if k.startswith("val_") and k not in HISTORY_FIELDS})
    writer = csv.DictWriter(out, HISTORY_FIELDS + sources, extrasaction="ignore")  # per-source val_* last
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (int(v) if k == "epoch" else f"{v:.6g}") for k, v in r.items()})
    images.write_atomic(history_csv, out.getvalue().encode())


def plot_curves(history_csv: str | Path, path: str | Path | None = None, show: bool = False):
    """Loss, accuracy, seed_iou and iou per epoch, train and val; returns the Figure.

    Args:
        history_csv: a run's history.csv.
        path: PNG to write (default: curves.png beside the CSV); written atomically.
        show: also open a window.
    """
    history_csv = Path(history_csv)
    rows = read_history(history_csv)
    fig = new_figure((4 * len(CURVES), 3.2), show)
    axes = fig.subplots(1, len(CURVES))
    epochs = [r["epoch"] for r in rows]
    for ax, metric in zip(axes, CURVES, strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + metric, math.nan) for r in rows]
            ax.plot(epochs, values, style, marker="o", markersize=3, label="val" if prefix else "train")
        # Several sources: each one's val curve, thin (val_<source>_<metric>).
        suffix = f"_{metric}"
        per_source = sorted(
            {k for r in rows for k in r if k.startswith("val_") and k.endswith(suffix)} - {f"val{suffix}"}
        )
        for key in per_source:
            if metric == "iou" and key.endswith("_seed_iou"):
                continue
            values = [r.get(key, math.nan) for r in rows]
            ax.plot(epochs, values, ":", linewidth=1, label=key[len("val_") : -len(suffix)])
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return finish(fig, path or history_csv.with_name("curves.png"), show)
