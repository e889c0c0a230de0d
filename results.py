"""Looks at a trained model: cutouts of any photo, a figure of predictions, test metrics.

    python results.py --model runs/demo/best.keras photos/ me.jpg
        -> cutouts/<stem>.png (RGBA at the photo's resolution) and results.png
    python results.py --model runs/demo/best.keras --evaluate data/test --json test.json
        -> accuracy, iou and seed_iou over the whole split, and a figure of the worst photos

Inference follows the original: squash the photo to the model's input size, scale to
[0, 1], predict. The probability map is then upsampled smoothly to the photo's size and
used as the cutout's alpha channel (``--hard``: thresholded at 0.5, like the original).
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

import images

THUMBNAIL = 256  # longest side of a photo in a figure


class ModelError(ValueError):
    """A --model that is missing, not a Keras model, or has the wrong shapes."""


# ---------------------------------------------------------------------------- model


def load_model(path: str | Path):
    """Loads a U-net .keras file for inference (safe_mode, not compiled) and checks its shapes.

    Raises:
        ModelError: one line naming the file and what is wrong.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"--model {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"--model {path}: not a Keras model file (.keras)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same here
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"--model {path}: cannot load it as a Keras model ({reason[:200]})") from None
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"--model {path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
    in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] != 3 or len(out_shape) != 4 or out_shape[-1] != 1:
        raise ModelError(
            f"--model {path}: expected images (batch, height, width, 3) -> masks (batch, height, width, 1), "
            f"found {in_shape} -> {out_shape}"
        )
    return model


def model_size(model, size: int | None) -> int:
    """The input size to use: ``size`` if given, else the model's fixed size, else 128."""
    height, width = model.inputs[0].shape[1:3]
    if size is None:
        return height if height is not None and height == width else 128
    if size <= 0 or size % 32:
        raise ModelError(f"--size must be a positive multiple of 32. Received: {size}")
    if height is not None and (height, width) != (size, size):
        raise ModelError(f"--size {size}: this model takes {height}x{width} inputs only")
    return size


class Predictor:
    """Runs the model on batches of squashed photos, as a traced tf.function.

    Calling the model through one ``tf.function`` avoids ``model.predict``'s per-call setup,
    which dominates the time of a single small image.
    """

    def __init__(self, model, image_size: int = 128):
        import tensorflow as tf

        self.model, self.image_size = model, image_size
        self._tf = tf
        self._forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 or [0, 1] float -> (n, size, size) float32 probabilities."""
        x = self._tf.convert_to_tensor(batch)
        if x.dtype == self._tf.uint8:
            x = self._tf.cast(x, self._tf.float32) / 255.0
        return self._forward(x).numpy()[..., 0].astype(np.float32)


# ---------------------------------------------------------------------------- cutouts


def parse_background(value: str | None, base: Path = Path(".")):
    """--background: None, 'blur', an image file, or a colour ('white', '#00ff00', '0,255,0')."""
    if value is None or value == "blur":
        return value
    path = base / value
    if path.suffix.lower() in images.IMAGE_EXTENSIONS:
        if not path.is_file():
            raise ValueError(f"--background {value}: no such image file")
        return images.read_rgb(path)
    if value.count(",") == 2:
        try:
            rgb = tuple(int(v) for v in value.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb):
            return rgb
    from matplotlib.colors import to_rgb

    try:
        return tuple(round(255 * c) for c in to_rgb(value))
    except ValueError:
        raise ValueError(
            f"--background {value}: not a colour ('white', '#00ff00', '0,255,0'), 'blur', or an image file"
        ) from None


def alpha_map(prob: np.ndarray, height: int, width: int, hard: bool = False) -> np.ndarray:
    """(size, size) probabilities -> (height, width) uint8 alpha, upsampled smoothly.

    Bilinear upsampling gives soft edges instead of a staircase of model pixels; ``hard``
    thresholds the smooth map at 0.5 (the original's binary mask, with smooth contours).
    """
    alpha = cv2.resize(prob.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if hard:
        return np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    return np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


def background_image(background, photo: np.ndarray) -> np.ndarray:
    """The replacement background at the photo's size."""
    height, width = photo.shape[:2]
    if isinstance(background, str):  # "blur"
        sigma = max(height, width) / 60
        return cv2.GaussianBlur(photo, (0, 0), sigma)
    if isinstance(background, tuple):
        return np.broadcast_to(np.array(background, np.uint8), photo.shape).copy()
    # Another photo: scale to cover, then centre-crop (keeps its aspect ratio).
    bh, bw = background.shape[:2]
    scale = max(height / bh, width / bw)
    resized = cv2.resize(background, (max(width, round(bw * scale)), max(height, round(bh * scale))))
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top : top + height, left : left + width]


def cutout(photo: np.ndarray, prob: np.ndarray, hard: bool = False, background=None) -> np.ndarray:
    """The person cut out of ``photo``: RGBA, or RGB on ``background`` when one is given.

    Args:
        photo: (height, width, 3) uint8 RGB at full resolution.
        prob: (size, size) person probabilities from the model.
        hard: binary alpha (threshold 0.5) instead of soft.
        background: None (transparent), 'blur', an (r, g, b) colour, or an RGB image.
    """
    height, width = photo.shape[:2]
    alpha = alpha_map(prob, height, width, hard)
    if background is None:
        return np.dstack([photo, alpha])
    weight = alpha.astype(np.float32) / 255.0
    return cv2.blendLinear(photo, background_image(background, photo), weight, 1.0 - weight)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """Shrinks so the longest side is at most ``size`` (figures never hold full photos)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def find_photos(inputs: list[str]) -> list[Path]:
    """Photos given directly, and those found (recursively) in folders, in a stable order.

    Raises:
        FileNotFoundError: an input that does not exist.
    """
    photos = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in images.IMAGE_EXTENSIONS and not p.name.startswith(".")
            )
            photos.extend(found)
        elif path.exists():
            photos.append(path)
        else:
            raise FileNotFoundError(f"{name}: no such file or folder")
    return photos


def output_names(photos: list[Path], out_dir: Path, ext: str) -> list[Path]:
    """<out_dir>/<stem><ext> for each photo; a repeated stem gets -2, -3, ..."""
    seen, names = {}, []
    for photo in photos:
        n = seen[photo.stem] = seen.get(photo.stem, 0) + 1
        names.append(out_dir / (f"{photo.stem}{ext}" if n == 1 else f"{photo.stem}-{n}{ext}"))
    return names


def _read(path: Path):
    try:
        return images.read_rgb(path)
    except images.ImageReadError as e:
        return e


def cut_out_photos(
    predictor: Predictor,
    photos: list[Path],
    outputs: list[Path],
    hard: bool = False,
    background=None,
    batch_size: int = 8,
) -> tuple[list[dict], list[str]]:
    """Predicts every photo in batches and writes its cutout (full resolution).

    Photos are read in a background thread while the model runs; only thumbnails are
    kept, so a folder of large photos does not fill the memory.

    Returns:
        (rows, failures): per written photo a dict with 'name', 'photo' (thumbnail) and
        'prob' (model-size probabilities); and one message per photo that failed.
    """
    from tqdm import tqdm

    rows, failures = [], []
    chunks = [list(range(i, min(i + batch_size, len(photos)))) for i in range(0, len(photos), batch_size)]
    progress = tqdm(total=len(photos), desc="cutting out", unit="photo", disable=None)
    with ThreadPoolExecutor(max_workers=2) as pool:

        def submit(chunk):
            return [pool.submit(_read, photos[i]) for i in chunk]

        pending = submit(chunks[0]) if chunks else []
        writes = []
        for k, chunk in enumerate(chunks):
            loaded = [f.result() for f in pending]
            pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []  # read ahead
            good = []
            for i, photo in zip(chunk, loaded, strict=True):
                if isinstance(photo, Exception):
                    failures.append(str(photo))
                    progress.update()
                else:
                    good.append((i, photo))
            if not good:
                continue
            probs = predictor(np.stack([images.squash(photo, predictor.image_size) for _, photo in good]))
            for (i, photo), prob in zip(good, probs, strict=True):
                result = cutout(photo, prob, hard, background)
                ext = outputs[i].suffix
                writes.append(pool.submit(images.write_atomic, outputs[i], images.encode(result, ext, quality=95)))
                rows.append({"name": photos[i].name, "photo": thumbnail(photo), "prob": prob})
                progress.update()
            for w in writes:  # at most one batch of encoded cutouts waits in memory
                w.result()
            writes = []
    progress.close()
    return rows, failures


# ---------------------------------------------------------------------------- figures


def _checkerboard(height: int, width: int, cell: int = 8) -> np.ndarray:
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
        titles: optional text above each row's photo.
        show: also open a window (needs a screen).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib

    if not show:
        matplotlib.use("Agg")  # works without a screen
    import matplotlib.pyplot as plt

    columns = ["photo", *(["true mask"] if masks is not None else []), "predicted mask", "cutout"]
    rows = len(photos)
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.6 * len(columns), 2.6 * rows), squeeze=False)
    for r, (photo, prob) in enumerate(zip(photos, probs, strict=True)):
        height, width = photo.shape[:2]
        alpha = alpha_map(prob, height, width).astype(np.float32)[..., None] / 255.0
        panels = [photo]
        if masks is not None:
            panels.append(cv2.resize(np.asarray(masks[r], np.float32).squeeze(), (width, height)))
        panels.append(alpha[..., 0])
        panels.append(photo.astype(np.float32) / 255.0 * alpha + _checkerboard(height, width) * (1 - alpha))
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
    if path is not None:
        path = Path(path)
        tmp = images.tmp_name(path).with_suffix(".png")
        try:
            fig.savefig(tmp, dpi=80, format="png")
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    if show:
        plt.show()
    plt.close(fig)
    return fig


def plot_split(predictor: Predictor, split_dir: str | Path, path: str | Path, rows: int = 12):
    """``plot_predictions`` of the first ``rows`` pairs of a split folder, true masks included."""
    import data

    shown = list(data.load_split(split_dir, predictor.image_size).take(rows).as_numpy_iterator())
    photos = [image for image, _ in shown]
    probs = list(predictor(np.stack(photos)))
    return plot_predictions(photos, probs, path, masks=[mask for _, mask in shown])


# ---------------------------------------------------------------------------- evaluation


def evaluate(predictor: Predictor, split_dir: str | Path, batch_size: int = 32, worst: int = 0) -> dict:
    """accuracy, iou and seed_iou over a whole split, with the training pipeline.

    ``iou`` pools every pixel of the split; ``seed_iou`` is the original's metric,
    averaged over batches of ``batch_size`` as Keras did.

    Returns:
        {'accuracy', 'iou', 'seed_iou', 'images'} and, with ``worst``, 'worst': a list of
        (name, iou, image uint8, mask, prob) of the worst-scoring photos.
    """
    import keras

    import data
    import model as unet

    dataset = data.make_dataset(split_dir, predictor.image_size, batch_size, with_index=True)
    accuracy, _, iou = unet.make_metrics()
    seed_iou = keras.metrics.MeanMetricWrapper(unet.seed_iou, name="seed_iou")
    scores = []  # (per-image iou, index)
    for x, y, index in dataset:
        prob = predictor(x.numpy())[..., None]
        for metric in (accuracy, seed_iou, iou):
            metric.update_state(y, prob)
        truth, hard = y.numpy() > 0.5, prob >= 0.5
        inter = np.sum(truth & hard, axis=(1, 2, 3))
        union = np.sum(truth | hard, axis=(1, 2, 3))
        scores += zip(
            np.where(union > 0, inter / np.maximum(union, 1), 1.0).tolist(), index.numpy().tolist(), strict=True
        )
    result = {
        "accuracy": float(accuracy.result()),
        "iou": float(iou.result()),
        "seed_iou": float(seed_iou.result()),
        "images": len(scores),
    }
    if worst:
        names = [Path(p).stem for p in data.find_pairs(split_dir)[0]]
        chosen = {i: s for s, i in sorted(scores)[:worst]}
        found = {}
        for image, mask, index in data.load_split(split_dir, predictor.image_size, with_index=True):
            if int(index) in chosen:
                found[int(index)] = (image.numpy(), mask.numpy()[..., 0])
        result["worst"] = [
            (names[i], chosen[i], *found[i], predictor(found[i][0][None])[0]) for i in sorted(chosen, key=chosen.get)
        ]
    return result


# ---------------------------------------------------------------------------- script


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Cut people out of photos with a trained model, plot predictions, or evaluate a split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("photos", nargs="*", help="photos and folders of photos (walked recursively)")
    parser.add_argument("--model", required=True, help="a .keras model file, e.g. runs/demo/best.keras")
    parser.add_argument("--out-dir", default="cutouts", help="folder for the cutouts")
    parser.add_argument("--figure", default="results.png", help="figure of the predictions (or of the worst photos)")
    parser.add_argument("--show", action="store_true", help="also open the figure in a window")
    parser.add_argument("--hard", action="store_true", help="binary alpha (threshold 0.5) instead of soft edges")
    parser.add_argument(
        "--background",
        default=None,
        help="replace the background: a colour (white, #00ff00, 0,255,0), blur, or an image file",
    )
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="cutout format; jpg needs --background")
    parser.add_argument(
        "--size", type=int, default=None, help="model input size, a multiple of 32 (default: the model's, else 128)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="photos per forward pass")
    parser.add_argument("--figure-rows", type=int, default=12, help="at most this many photos in the figure")
    parser.add_argument(
        "--evaluate", metavar="SPLIT_DIR", default=None, help="evaluate on a split folder (images/, masks/)"
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="with --evaluate: write the metrics as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing cutouts, figure and JSON")
    args = parser.parse_args(argv)
    if not args.photos and not args.evaluate:
        parser.error("give photos or folders to cut out, or --evaluate SPLIT_DIR")
    if args.format == "jpg" and args.background is None:
        parser.error("--format jpg needs --background (JPEG has no transparency)")
    if args.batch_size < 1 or args.figure_rows < 1:
        parser.error("--batch-size and --figure-rows must be at least 1")
    if args.json and not args.evaluate:
        parser.error("--json needs --evaluate")
    return args


def _refuse_existing(paths: list[Path], what: str) -> None:
    existing = [p for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"{len(existing)} {what} already exist (e.g. {existing[0]}): use --overwrite or choose another path"
        )


def run(args: argparse.Namespace) -> int:
    """Does the work of main(); returns the exit code."""
    model = load_model(args.model)
    size = model_size(model, args.size)
    background = parse_background(args.background)
    figure = Path(args.figure)
    print("results.py configuration:")
    for key, value in vars(args).items():
        print(f"  {key:13} {value}")
    predictor = Predictor(model, size)
    status = 0

    if args.evaluate:
        to_write = [figure] + ([Path(args.json)] if args.json else [])
        if not args.overwrite:
            _refuse_existing(to_write, "output file(s)")
        scores = evaluate(predictor, args.evaluate, worst=args.figure_rows)
        worst = scores.pop("worst")
        print(
            f"{args.evaluate}: {scores['images']} images: accuracy {scores['accuracy']:.4f}, "
            f"iou {scores['iou']:.4f}, seed_iou {scores['seed_iou']:.4f}"
        )
        if args.json:
            images.write_atomic(Path(args.json), (json.dumps(scores, indent=2) + "\n").encode())
        plot_predictions(
            [w[2] for w in worst],
            [w[4] for w in worst],
            figure,
            masks=[w[3] for w in worst],
            titles=[f"{w[0]}: iou {w[1]:.2f}" for w in worst],
            show=args.show,
        )
        print(f"wrote {figure} (the {len(worst)} worst-scoring photos)" + (f" and {args.json}" if args.json else ""))
        return status

    photos = find_photos(args.photos)
    if not photos:
        raise FileNotFoundError(f"no photos ({', '.join(images.IMAGE_EXTENSIONS)}) in {' '.join(args.photos)}")
    out_dir = Path(args.out_dir)
    outputs = output_names(photos, out_dir, f".{args.format}")
    if not args.overwrite:
        _refuse_existing([figure], "figure file(s)")
        _refuse_existing(outputs, "cutout(s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failures = cut_out_photos(predictor, photos, outputs, args.hard, background, args.batch_size)
    for message in failures:
        print(f"failed: {message}", file=sys.stderr)
    if rows:
        shown = rows[: args.figure_rows]
        plot_predictions(
            [r["photo"] for r in shown],
            [r["prob"] for r in shown],
            figure,
            titles=[r["name"] for r in shown],
            show=args.show,
        )
    print(
        f"done: {len(rows)} cutout(s) in {out_dir}/, {len(failures)} failed"
        + (f"; figure of {min(len(rows), args.figure_rows)} photo(s) in {figure}" if rows else "")
    )
    return 1 if failures else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ModelError, FileNotFoundError, FileExistsError, ValueError, images.ImageReadError) as e:
        print(f"results.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
