"""Using a trained model: load it for inference, predict batches, cut people out, score a split.

    model = load_model("runs/demo/best.keras")     # checked, float32, ready to predict
    predictor = Predictor(model, model_size(model))
    probs = predictor(batch_of_squashed_photos)     # (n, size, size) probabilities

Inference follows the original: squash the photo to the model's input size
(``images.load_photo``, the preprocessing training used), scale to [0, 1], predict. The
probability map is then upsampled to the photo's size for the cutout (compose.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import data
import images
import metrics


class ModelError(ValueError):
    """A --model that is missing, not a Keras model, or has the wrong shapes."""


def as_float32(model):
    """The model with every layer computing in float32 (the same weights).

    A model trained under a mixed-precision policy keeps that policy when it is saved and
    reloaded, and would predict in bfloat16 (emulated, and slow, on most CPUs) or float16.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path: str | Path):
    """Loads a U-net .keras file for inference (safe_mode, not compiled, float32) and checks its shapes.

    Raises:
        ModelError: one line naming the file and what is wrong.
    """
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
    return as_float32(model)


def trained_size(path: str | Path) -> int | None:
    """The input size a model file in a train.py run folder was trained at (its config.json), or None."""
    config = Path(path).parent / "config.json"
    try:
        size = json.loads(config.read_text())["options"]["image_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) else None


def model_size(model, size: int | None = None, path: str | Path | None = None) -> int:
    """The input size to use: ``size`` if given, else the model's fixed size, else the size it
    was trained at (a run folder's config.json beside ``path``), else ``images.DEFAULT_SIZE`` (128)."""
    height, width = model.inputs[0].shape[1:3]
    if size is None:
        if height is not None and height == width:
            return height
        return (trained_size(path) if path is not None else None) or images.DEFAULT_SIZE
    try:
        images.check_size(size, "--size")
    except ValueError as e:
        raise ModelError(str(e)) from None
    if height is not None and (height, width) != (size, size):
        raise ModelError(f"--size {size}: this model takes {height}x{width} inputs only")
    return size


class Predictor:
    """Runs the model on batches of squashed photos, as a traced tf.function.

    Calling the model through one ``tf.function`` avoids ``model.predict``'s per-call setup,
    which dominates the time of a single small image.
    """

    def __init__(self, model, image_size: int = images.DEFAULT_SIZE):
        self.model, self.image_size = model, image_size
        # One trace for every batch size: a folder's last, smaller batch is not traced again.
        spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 or [0, 1] float -> (n, size, size) float32 probabilities."""
        x = tf.convert_to_tensor(batch)
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32) / 255.0
        return self._forward(x).numpy()[..., 0].astype(np.float32)


def _read(path: Path, size: int):
    """(the photo, the photo squashed to size x size), or the ImageReadError."""
    try:
        photo = images.read_rgb(path)
    except images.ImageReadError as e:
        return e
    return photo, images.squash(photo, size)


def _read_ahead(pool: ThreadPoolExecutor, photos: list[Path], batch_size: int, size: int):
    """Yields (indices, (photo, squashed) pairs or read errors) batch by batch, reading the next in ``pool`` meanwhile."""
    chunks = [list(range(i, min(i + batch_size, len(photos)))) for i in range(0, len(photos), batch_size)]
    pending = [pool.submit(_read, photos[i], size) for i in chunks[0]] if chunks else []
    for k, chunk in enumerate(chunks):
        loaded = [f.result() for f in pending]
        pending = [pool.submit(_read, photos[i], size) for i in chunks[k + 1]] if k + 1 < len(chunks) else []
        yield chunk, loaded


# The JPEG quality of a cutout on a background (results.py --format jpg, serve.py format=jpg).
JPEG_QUALITY = 95


def _encode_and_write(image: np.ndarray, path: Path) -> None:
    images.write_atomic(path, images.encode(image, path.suffix, quality=JPEG_QUALITY))


def _render_and_write(render: Callable, photo: np.ndarray, prob: np.ndarray, squashed: np.ndarray, path: Path):
    """Renders one photo and writes it; returns the ValueError of an image its format cannot hold, else None."""
    image = render(photo, prob, squashed=squashed)
    try:
        _encode_and_write(image, path)
    except ValueError as e:  # e.g. a photo too large for WebP: the others still go through
        return e
    return None


# Photos cut_out_photos renders at once: one per core of a 2-core machine. A write that fails
# (a full disk) stops the run with at most this many photos tried.
RENDERS_IN_FLIGHT = 2


# glibc's malloc options (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Lets glibc's malloc reuse freed memory for the next photo instead of returning it to the system.

    A 1920x1080 cutout makes about 80 MB of temporaries, most of them too large for malloc's
    heap by default (each its own mmap, unmapped when freed), so every photo took fresh pages
    that the kernel zeroed first: about 6 ms of a photo's CPU time on the AVX2-only class
    (benchmarks/results_speed.py). Raised limits keep them in the heap: the process keeps
    its largest footprint until it exits. A script's choice, not a library's (results.py
    calls it); elsewhere than glibc (macOS, Windows, musl) it does nothing and returns False.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 256 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


@contextlib.contextmanager
def opencv_threads(threads: int):
    """OpenCV's thread count set to ``threads`` inside the block, and set back after it."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def cut_out_photos(
    predictor: Predictor,
    photos: list[Path],
    outputs: list[Path],
    render: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    batch_size: int = 8,
    progress: bool = True,
    thumbnails: bool = False,
) -> tuple[list[dict], list[str]]:
    """Predicts every photo in batches and writes ``render(photo, prob, squashed)`` to its output file.

    Photos are read and squashed in a pool of two threads while the model runs, and each is
    rendered, encoded and written in that pool too, two photos at a time: the render is most
    of the work and OpenCV and NumPy release the GIL, so on two cores both compose while the
    model runs on the next batch. At most ``RENDERS_IN_FLIGHT`` full-size results are made at once,
    so a folder of large photos does not fill the memory.

    Args:
        predictor: the model.
        photos: photo files; outputs: one file per photo (its suffix picks the format).
        render: (full-size RGB photo, probability map, the photo as the model saw it) -> the
            image to write, e.g. ``compose.cutout`` (RGBA with clean edges) or
            ``compose.person_alpha`` (the alpha).
        batch_size: photos per forward pass.
        progress: show a progress bar.
        thumbnails: keep a thumbnail of each photo in its row (for a figure).

    Returns:
        (rows, failures): per written photo a dict with 'name', 'prob' (model-size
        probabilities) and with ``thumbnails`` 'photo'; and one message per photo that failed.
    """
    rows, failures = [], []

    def finish(i: int, write, row: dict) -> None:
        error = write.result()
        bar.update(1)
        if error is not None:
            failures.append(f"{photos[i]}: {error}")
            return
        rows.append(row)

    bar = tqdm(total=len(photos), desc="cutting out", unit="photo", disable=None if progress else True)
    writes = []  # (index, future, row) in order; kept across batches, so the next forward pass overlaps them
    # Two photos at a time share the cores: OpenCV's own threads beyond its share only wait for a
    # core, spinning (on 2 cores, one thread each: 1920x1080 photos on the AVX2-only class took 8%
    # less CPU and wall per photo, the same pixels). A single photo keeps them all.
    threads = max(1, (os.cpu_count() or 1) // RENDERS_IN_FLIGHT) if len(photos) > 1 else cv2.getNumThreads()
    with opencv_threads(threads), ThreadPoolExecutor(max_workers=2) as pool:
        for chunk, loaded in _read_ahead(pool, photos, batch_size, predictor.image_size):
            failures += [str(photo) for photo in loaded if isinstance(photo, Exception)]
            good = [(i, *read) for i, read in zip(chunk, loaded, strict=True) if not isinstance(read, Exception)]
            bar.update(len(chunk) - len(good))
            if not good:
                continue
            squashed = np.stack([small for _, _, small in good])
            probs = predictor(squashed)
            for (i, photo, small), prob in zip(good, probs, strict=True):
                write = pool.submit(_render_and_write, render, photo, prob, small, outputs[i])
                row = {"name": photos[i].name, "prob": prob}
                if thumbnails:
                    row["photo"] = images.thumbnail(photo)
                writes.append((i, write, row))
                if len(writes) >= RENDERS_IN_FLIGHT:
                    finish(*writes.pop(0))
        for write in writes:
            finish(*write)
    bar.close()
    return rows, failures


def evaluate(predictor: Predictor, split_dir: str | Path, batch_size: int = 32) -> dict:
    """accuracy, iou, seed_iou and each photo's IoU over a whole split, with the training pipeline.

    ``iou`` pools every pixel of the split; ``seed_iou`` is the original's metric,
    averaged over batches of ``batch_size`` as Keras did (metrics.py has the definitions).

    Returns:
        {'accuracy', 'iou', 'seed_iou', 'images', 'per_image'}: 'per_image' lists
        (image path, mask path, iou) for every photo scored, in the split's order.
    """
    image_paths, mask_paths = data.find_pairs(split_dir)
    dataset = data.make_dataset(split_dir, predictor.image_size, batch_size, with_index=True)
    accuracy, seed_iou, iou = metrics.make_metrics()
    per_image = []
    for x, y, index in dataset:
        prob = predictor(x.numpy())[..., None]
        for metric in (accuracy, seed_iou, iou):
            metric.update_state(y, prob)
        scores = keras.ops.convert_to_numpy(metrics.per_image_iou(y, prob))
        per_image += [(image_paths[i], mask_paths[i], float(s)) for i, s in zip(index.numpy(), scores, strict=True)]
    return {
        "accuracy": float(accuracy.result()),
        "iou": float(iou.result()),
        "seed_iou": float(seed_iou.result()),
        "images": len(per_image),
        "per_image": per_image,
    }
