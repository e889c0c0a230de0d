"""Exporting a U-net for serving and phones: one graph from a photo to its alpha, three formats.

    import inference, serving
    model = inference.load_model("runs/demo/best.keras")
    serving.export(model, "onnx", "person.onnx")          # or "saved_model" (a folder), "litert" (.tflite)
    alpha_of = serving.load_exported("person.onnx")       # runs it with ONNX Runtime, as a client would
    alpha = alpha_of(photo)                               # (H, W, 3) uint8 RGB -> (H, W) uint8

The exported graph takes what a client has, a uint8 RGB photo [1, H, W, 3] of any size
(input "image"), and returns its alpha at the same size, uint8 [1, H, W] (output "alpha";
255 is the person). Inside it does what results.py does around the model,
``compose.alpha_map(predictor(images.squash(photo, size)), H, W)``: squash to the model's
input size with OpenCV's arithmetic, scale to [0, 1], run the network, resize the
probabilities back bilinearly and round them to alpha = clip(p * 255 + 0.5).

Why the squashing is written out here: ``tf.image.resize``'s area and antialiased methods
are neither TFLite builtins nor converted faithfully to ONNX, and its bilinear method is
not OpenCV's 8-bit fixed-point one. ``squash`` reproduces ``cv2.resize`` (INTER_AREA when
shrinking, INTER_LINEAR when enlarging, as ``images.squash`` picks them) from ops every
format has: segment or cumulative sums, gathers and integer arithmetic. It gives OpenCV's
pixels exactly but for rare ties in OpenCV's float rounding, and for a few columns of
some photos narrower or shorter than the input size (OpenCV rounds a double there).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import compose
import images
import inference

FORMATS = ("saved_model", "litert", "onnx", "keras")
# saved_model is a folder; keras is the network alone, float32, its input fixed at the size it was
# trained at: the form results.py loads by default (models/person_unet.keras).
SUFFIXES = {"saved_model": "", "litert": ".tflite", "onnx": ".onnx", "keras": ".keras"}
# Beyond requirements.txt, what each format needs to be written and run: import name -> pip name.
PACKAGES = {
    "saved_model": {},
    "litert": {"ai_edge_litert": "ai-edge-litert"},
    "onnx": {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime"},
    "keras": {},
}
REQUIREMENTS = "requirements-export.txt"
ONNX_OPSET = 17
# The largest difference from results.py's alpha that an export check (and the tests) accept,
# in grey levels: one more than the most measured (the README's export section), for models
# more sensitive to a one-level difference in a squashed pixel than ours.
ALPHA_TOLERANCE = 3
# Photos (height, width) an export is checked on: one shrunk (INTER_AREA), one enlarged
# (INTER_LINEAR), one with a side below the input size (OpenCV's two-tap INTER_AREA).
CHECK_SIZES = ((720, 1280), (61, 97), (100, 400))

LINEAR, AREA, AREA_TWO_TAP = 0, 1, 2  # how cv2.resize runs images.squash's choice
COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: 8-bit linear weights are multiples of 1/2048


class ExportError(ValueError):
    """A format that cannot be written here, or an export that does not match results.py."""


def missing_packages(fmt: str) -> list[str]:
    """The pip names of the packages ``fmt`` needs that are not installed."""
    return [pip for module, pip in PACKAGES[fmt].items() if importlib.util.find_spec(module) is None]


def check_format(fmt: str) -> None:
    """Raises ExportError, with the pip command, unless ``fmt`` is known and can be written and run."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    missing = missing_packages(fmt)
    if missing:
        raise ExportError(
            f"{fmt} needs {', '.join(missing)}, not installed: pip install -r {REQUIREMENTS} "
            f"(or pip install {' '.join(missing)})"
        )


# ---------------------------------------------------------------------------- OpenCV's resize


def _mode(height, width, size: int):
    """images.squash's interpolation as cv2.resize runs it on uint8: AREA when the area shrinks
    and so does each side; OpenCV's INTER_AREA with a side that grows is a two-tap filter;
    LINEAR when the area grows."""
    shrink = size * size < height * width
    both = tf.logical_and(height >= size, width >= size)
    return tf.where(shrink, tf.where(both, AREA, AREA_TWO_TAP), LINEAR)


def _area_sum(x, n_out, cumulative: bool = False):
    """[n, m] float32 -> [n_out, m]: each output row is the sum of the input rows its cell
    covers, weighted by how much of each it covers (not yet divided by the cell's size).

    Cell d covers [d * n / n_out, (d + 1) * n / n_out). Every row is first added to the cell
    it starts in, which reads the photo once and is exact for whole rows (integers below
    2**24); then the share of each row that straddles an edge is moved to the next cell.
    The first step is a segment sum, or with ``cumulative`` differences of a cumulative sum
    (exact only on integers): ONNX has no segment sum, and tf2onnx builds one from Unique,
    TopK and ScatterND that is several times slower than its CumSum, while TensorFlow's
    cumulative sum is the slow one there.
    """
    n = tf.shape(x)[0]
    if cumulative:
        # the last row that starts in each cell: ceil((d + 1) * n / n_out) - 1
        last = tf.clip_by_value(((tf.range(n_out) + 1) * n + n_out - 1) // n_out - 1, 0, n - 1)
        ends = tf.gather(tf.cumsum(x, axis=0), last)
        whole = ends - tf.concat([tf.zeros_like(ends[:1]), ends[:-1]], axis=0)
    else:
        # LiteRT wants segment ids that go up by 0 or 1, so with fewer rows than cells (the
        # photo is enlarged, and this result is not used) each row gets its own cell, and the
        # rows are repeated up to n_out.
        rows = tf.range(n)
        sums = tf.math.segment_sum(x, tf.where(n >= n_out, rows * n_out // n, rows))
        whole = tf.gather(sums, tf.minimum(tf.range(n_out), tf.shape(sums)[0] - 1))
    moved_in, rows_in = _straddling(n, n_out, tf.range(n_out))
    moved_out, rows_out = _straddling(n, n_out, tf.range(n_out) + 1)
    return whole + moved_in[:, None] * tf.gather(x, rows_in) - moved_out[:, None] * tf.gather(x, rows_out)


def _straddling(n, n_out, edges):
    """For cell edges at edge * n / n_out: the row each edge cuts and the share of it past the edge.

    float32 of the exact ratio (one rounding) puts the edges where OpenCV's double arithmetic does.
    """
    t = tf.cast(edges * n, tf.float32) / tf.cast(n_out, tf.float32)
    row = tf.floor(t)
    moved = tf.where(t > row, row + 1.0 - t, 0.0)  # an edge between rows cuts none
    return moved, tf.minimum(tf.cast(row, tf.int32), n - 1)


def _area(image, size: int, cumulative: bool = False):
    """[H, W, C] uint8 -> [size, size, C] float32: cv2.resize INTER_AREA (both sides shrink).

    OpenCV sums in float and rounds half to even, except for an exact 2x2 reduction, which
    it does in integers, rounding half up. ``cumulative``: see _area_sum (for the photo's
    rows only: the column sums are not integers).
    """
    height, width, channels = tf.shape(image)[0], tf.shape(image)[1], image.shape[2]  # channels static: 3
    x = _area_sum(tf.cast(tf.reshape(image, tf.stack([height, width * channels])), tf.float32), size, cumulative)
    x = tf.transpose(tf.reshape(x, tf.stack([size, width, channels])), [1, 0, 2])  # [W, size, C]
    x = _area_sum(tf.reshape(x, tf.stack([width, size * channels])), size)  # [size (columns), size * C]
    x = tf.transpose(tf.reshape(x, tf.stack([size, size, channels])), [1, 0, 2])
    scale_h = tf.cast(height, tf.float32) / size
    scale_w = tf.cast(width, tf.float32) / size
    x = x * (1.0 / (scale_h * scale_w))  # OpenCV's 1.f / (iscale_x * iscale_y) for whole-number scales
    two_by_two = tf.logical_and(tf.equal(scale_h, 2.0), tf.equal(scale_w, 2.0))
    return tf.where(two_by_two, tf.floor(x + 0.5), tf.round(x))


def _linear_start(n_in, n_out):
    """Where cv2 INTER_LINEAR samples each output index d along an axis: x = (d + 0.5) * n_in /
    n_out - 0.5, as (floor(x), x - floor(x)). OpenCV computes x in double and rounds it to float
    once, which one float32 division of exact integers reproduces."""
    d = tf.range(n_out)
    x = tf.cast((2 * d + 1) * n_in - n_out, tf.float32) / tf.cast(2 * n_out, tf.float32)
    start = tf.floor(x)
    return tf.cast(start, tf.int32), x - start


def _two_taps(start, frac, n_in, clamp: bool):
    """(first pixel, second pixel, weight of the second), with OpenCV's edges. ``clamp``: along a
    row OpenCV pins samples outside the image to its edge pixel; down the columns it does not
    (it only clips the row index), and the weights stay fractional."""
    if clamp:
        frac = tf.where(tf.logical_or(start < 0, start >= n_in - 1), 0.0, frac)
    return tf.clip_by_value(start, 0, n_in - 1), tf.clip_by_value(start + 1, 0, n_in - 1), frac


def _taps(n_in, n_out, mode, clamp: bool):
    """OpenCV's two-tap weights for uint8: (first pixel, second pixel, their weights in 1/2048).

    LINEAR samples as _linear_start says; the two-tap INTER_AREA starts at floor(d * n_in /
    n_out) with OpenCV's own fraction.
    """
    d = tf.range(n_out)
    start_linear, frac_linear = _linear_start(n_in, n_out)
    start_area = (d * n_in) // n_out
    frac_area = tf.cast((d + 1) * n_in - (start_area + 1) * n_out, tf.float32) / tf.cast(n_in, tf.float32)
    frac_area = tf.where(frac_area <= 0.0, 0.0, frac_area - tf.floor(frac_area))
    two_tap = tf.equal(mode, AREA_TWO_TAP)
    start = tf.where(two_tap, start_area, start_linear)
    first, second, frac = _two_taps(start, tf.where(two_tap, frac_area, frac_linear), n_in, clamp)
    weight0 = tf.cast(tf.round((1.0 - frac) * COEF_SCALE), tf.int32)  # cvRound: half to even, as tf.round
    weight1 = tf.cast(tf.round(frac * COEF_SCALE), tf.int32)
    return first, second, weight0, weight1


def _two_tap(image, size: int, mode):
    """[H, W, C] uint8 -> [size, size, C] int32: cv2.resize's 8-bit fixed-point INTER_LINEAR
    (and two-tap INTER_AREA), in integers exactly as its vector code rounds: the horizontal
    pass is kept in 1/2048 units, shifted right by 4, multiplied by the vertical weights
    keeping the high 16 bits, and the two rows' sum rounded by (v + 2) >> 2. All values are
    non-negative, so // is >>.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    first_col, second_col, w0, w1 = _taps(width, size, mode, clamp=True)

    def along_rows(rows):  # OpenCV's horizontal pass: exact integers, in 1/2048
        left = tf.cast(tf.gather(rows, first_col, axis=1), tf.int32) * w0[None, :, None]
        return left + tf.cast(tf.gather(rows, second_col, axis=1), tf.int32) * w1[None, :, None]

    # Only the 2 * size rows that are sampled are read (whole rows: cheap gathers).
    first_row, second_row, w0_rows, w1_rows = _taps(height, size, mode, clamp=False)
    top = (along_rows(tf.gather(image, first_row)) // 16) * w0_rows[:, None, None] // 65536
    bottom = (along_rows(tf.gather(image, second_row)) // 16) * w1_rows[:, None, None] // 65536
    return tf.clip_by_value((top + bottom + 2) // 4, 0, 255)


def squash(image, size: int, cumulative: bool = False):
    """[1, H, W, 3] uint8 -> [1, size, size, 3] float32 in 0..255: ``images.squash`` in graph ops.

    Both resizes are computed and one is kept: for a large photo the two-tap one reads only
    2 * size rows, for a small one the area one is small too, and a graph without branches
    converts to every format. ``cumulative``: sum the photo's rows with a cumulative sum (for
    ONNX; see _area_sum).
    """
    height, width = tf.shape(image)[1], tf.shape(image)[2]
    mode = _mode(height, width, size)
    image = tf.reshape(image, tf.stack([height, width, 3]))  # not image[0]: LiteRT's strided slice copies slowly
    area = _area(image, size, cumulative)
    two_tap = tf.cast(_two_tap(image, size, mode), tf.float32)
    return tf.where(tf.equal(mode, AREA), area, two_tap)[None]


def unsquash(prob, height, width):
    """[size, size] (or [size, size, C]) float32 -> [height, width] (or [height, width, C]):
    cv2.resize INTER_LINEAR on float32, as ``compose.alpha_map`` and ``compose.guided_alpha``
    run it: across each row, then down the columns, with its weights.

    Written out rather than tf.image.resize, which LiteRT runs several times slower at a
    dynamic size (its resize kernel is not delegated), and which is not OpenCV's to the bit.
    """
    size = tf.shape(prob)[0]
    tail = [1] * (len(prob.shape) - 2)  # the weights broadcast over the channels
    first, second, frac = _two_taps(*_linear_start(size, width), size, clamp=True)
    frac = tf.reshape(frac, [-1, *tail])
    rows = tf.gather(prob, first, axis=1) * (1.0 - frac) + tf.gather(prob, second, axis=1) * frac  # [size, W]
    first, second, frac = _two_taps(*_linear_start(size, height), size, clamp=False)
    frac = tf.reshape(frac, [-1, 1, *tail])
    return tf.gather(rows, first) * (1.0 - frac) + tf.gather(rows, second) * frac


def _box(x, radius: int):
    """compose._box in graph ops: [n, n, C] -> the mean over each (2 radius + 1)-square window, reflected."""
    padded = tf.pad(x[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    return tf.nn.avg_pool2d(padded, 2 * radius + 1, 1, "VALID")[0]


def guided_coefficients(guide, prob, radius: int, eps: float):
    """compose.guided_coefficients in graph ops: [n, n, 3] guide and [n, n] map -> a [n, n, 3], b [n, n]."""
    mean_i, mean_p = _box(guide, radius), _box(prob[..., None], radius)[..., 0]
    cov = _box(guide * prob[..., None], radius) - mean_i * mean_p[..., None]
    channels, means = tf.unstack(guide, axis=-1), tf.unstack(mean_i, axis=-1)

    def var(j, k):
        product = _box((channels[j] * channels[k])[..., None], radius)[..., 0]
        return product - means[j] * means[k] + (eps if j == k else 0.0)

    rr, rg, rb, gg, gb, bb = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    c_rr, c_rg, c_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    c_gg, c_gb, c_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * c_rr + rg * c_rg + rb * c_rb
    c0, c1, c2 = tf.unstack(cov, axis=-1)
    a = (
        tf.stack(
            [c_rr * c0 + c_rg * c1 + c_rb * c2, c_rg * c0 + c_gg * c1 + c_gb * c2, c_rb * c0 + c_gb * c1 + c_bb * c2],
            axis=-1,
        )
        / det[..., None]
    )
    b = mean_p - tf.reduce_sum(a * mean_i, axis=-1)
    return _box(a, radius), _box(b[..., None], radius)[..., 0]


# ---------------------------------------------------------------------------- the exported model

SIGNATURE = [tf.TensorSpec([1, None, None, 3], tf.uint8, name="image")]


class AlphaModel(keras.Model):
    """uint8 [1, H, W, 3] RGB of any size -> {"alpha": uint8 [1, H, W]}.

    Only for exporting: it is never saved as .keras. It must be called once before
    ``export`` (a subclassed model is built by its first call).
    """

    def __init__(self, net, size: int, cumulative: bool = False, guided: bool = True, **kwargs):
        super().__init__(name="alpha_model", **kwargs)
        self.net, self.size, self.cumulative, self.guided = net, size, cumulative, guided

    def call(self, image):
        image = tf.convert_to_tensor(image)
        height, width = tf.shape(image)[1], tf.shape(image)[2]
        squashed = squash(image, self.size, self.cumulative)
        prob = self.net(squashed / 255.0, training=False)
        if self.guided:  # compose.guided_alpha: q = a . RGB + b at full size, rounded and clipped to 0..255
            prob = tf.reshape(tf.cast(prob, tf.float32), [self.size, self.size])
            a, b = guided_coefficients(squashed[0] / 255.0, prob, compose.GUIDE_RADIUS, compose.GUIDE_EPS)
            low, high = compose.GUIDE_LEVELS
            a, b = a / (high - low), (b - low) / (high - low)
            photo = tf.cast(tf.reshape(image, tf.stack([height, width, 3])), tf.float32)
            q = tf.reduce_sum(unsquash(a, height, width) * photo, axis=-1) + unsquash(b * 255.0, height, width)
            alpha = tf.cast(tf.clip_by_value(tf.round(q), 0.0, 255.0), tf.uint8)
            return {"alpha": tf.reshape(alpha, tf.stack([1, height, width]))}
        # compose.alpha_map: clip(resize(p) * 255 + 0.5).astype(uint8). Scaling before resizing
        # saves two passes over the full-size map (bilinear weights sum to 1, so only a value
        # within a rounding error of a whole number can change), and the clip is not needed: a
        # sigmoid is in [0, 1], so the values are in [0.5, 255.5], which a cast to uint8
        # truncates to 0..255 as astype does.
        prob = tf.reshape(tf.cast(prob, tf.float32), [self.size, self.size])
        scaled = unsquash(prob * 255.0 + 0.5, height, width)
        return {"alpha": tf.reshape(tf.cast(scaled, tf.uint8), tf.stack([1, height, width]))}


def alpha_model(model, size: int | None = None, fmt: str | None = None, guided: bool = True) -> AlphaModel:
    """The graph to export as ``fmt`` around a float32 copy of ``model``, at its input size
    (inference.model_size); ``guided``: with results.py's guided filter (its default)."""
    net = inference.as_float32(model)
    wrapper = AlphaModel(net, inference.model_size(model, size), cumulative=fmt == "onnx", guided=guided)
    wrapper(np.zeros((1, 8, 8, 3), np.uint8))
    return wrapper


class _Servable(tf.Module):
    """What the SavedModel holds: the variables once, and the serving function."""

    def __init__(self, wrapper: AlphaModel):
        super().__init__(name="alpha_model")
        # Keras' own SavedModel export tracks the model and a list of its variables, and
        # writes the weights twice (keras-team/keras#23553); tf.variables listed once do not.
        self.weights = [v.value for v in wrapper.variables]
        self.serve = tf.function(lambda image: wrapper(image), input_signature=SIGNATURE)


def fixed_size(net, size: int):
    """A copy of the U-net ``net`` (float32) whose input is fixed at size x size: it tells results.py its size."""
    config = net.get_config()
    config["layers"][0]["config"]["batch_shape"] = (None, size, size, 3)
    copy = keras.Model.from_config(config)
    copy.set_weights(net.get_weights())
    return copy


def _write(wrapper: AlphaModel, fmt: str, path: Path) -> None:
    if fmt == "keras":
        fixed_size(wrapper.net, wrapper.size).save(path)
    elif fmt == "saved_model":
        module = _Servable(wrapper)
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    elif fmt == "litert":
        # Builtin ops only: Keras also allows TensorFlow ("Flex") ops by default, which would
        # let one in silently, and the LiteRT runtime from pip cannot run them.
        spec = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
        wrapper.export(str(path), format="litert", input_signature=SIGNATURE, verbose=False, target_spec=spec)
    else:
        with warnings.catch_warnings():  # Keras' patch of tf2onnx for NumPy 2 trips NumPy's np.object warning
            warnings.simplefilter("ignore", FutureWarning)
            wrapper.export(str(path), format="onnx", input_signature=SIGNATURE, verbose=False, opset_version=ONNX_OPSET)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _replace(tmp: Path, path: Path) -> None:
    """Renames ``tmp`` to ``path``; an existing file or folder there is moved aside first and
    removed after, so ``path`` never holds a half-written export."""
    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


def check_destination(fmt: str, path: str | Path, overwrite: bool = False) -> Path:
    """``path`` as a Path if ``fmt`` may be written there; raises ExportError or FileExistsError."""
    path = Path(path)
    if SUFFIXES[fmt] and path.suffix.lower() != SUFFIXES[fmt]:
        raise ExportError(f"--out {path}: a {fmt} export is a file ending in {SUFFIXES[fmt]}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"--out {path} already exists: use --overwrite or choose another path")
    if not path.parent.is_dir():
        raise ExportError(f"--out {path}: no folder {path.parent}")
    return path


def export(
    model, fmt: str, path: str | Path, size: int | None = None, overwrite: bool = False, guided: bool = True
) -> dict:
    """Writes ``model`` (a Keras U-net) as ``fmt`` to ``path``: a folder for saved_model, a
    .tflite file for litert, an .onnx file for onnx.

    The export is written under a hidden temporary name beside ``path``, run with its runtime
    on generated photos and compared with results.py's alpha (``check``), and only then
    renamed to ``path``; on any failure nothing is left behind.

    Returns:
        {(height, width): largest alpha difference from results.py's, in grey levels}.

    Raises:
        ExportError: unknown format, missing packages, wrong suffix, or a failed check.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    check_format(fmt)
    path = check_destination(fmt, path, overwrite)
    wrapper = alpha_model(model, size, fmt, guided)
    tmp = images.tmp_name(path, keep_suffix=True)  # the LiteRT writer checks the suffix
    _remove(tmp)
    try:
        _write(wrapper, fmt, tmp)
        # A .keras file holds the network alone: results.py (or serving.load_exported) adds the filter.
        reference_guided = guided or fmt == "keras"
        differences = check(load_exported(tmp), inference.Predictor(wrapper.net, wrapper.size), guided=reference_guided)
        worst = max(differences.values())
        if worst > ALPHA_TOLERANCE:
            shown = ", ".join(f"{h}x{w}: {d}" for (h, w), d in differences.items())
            raise ExportError(
                f"{path}: the exported alpha differs from results.py's by up to {worst} grey levels "
                f"(tolerance {ALPHA_TOLERANCE}; per photo {shown}); nothing written"
            )
        _replace(tmp, path)
    finally:
        _remove(tmp)
    return differences


def size_mb(path: str | Path) -> float:
    """An export's size on disk in MB (a SavedModel folder: all its files)."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 1e6


# ---------------------------------------------------------------------------- running an export


def _run_saved_model(path: Path, threads: int | None) -> Callable:
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]

    def alpha_of(photo: np.ndarray) -> np.ndarray:
        return serve(image=tf.constant(photo[None]))["alpha"].numpy()[0]

    alpha_of.loaded = loaded  # the loaded objects (variables) live as long as the function
    return alpha_of


def _run_litert(path: Path, threads: int | None) -> Callable:
    from ai_edge_litert.interpreter import Interpreter

    # The interpreter uses one thread unless told otherwise; a server wants all its cores.
    interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
    runner = interpreter.get_signature_runner()  # resizes the input to each photo's size

    def alpha_of(photo: np.ndarray) -> np.ndarray:
        return runner(image=photo[None])["alpha"][0]

    return alpha_of


def _run_onnx(path: Path, threads: int | None) -> Callable:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def alpha_of(photo: np.ndarray) -> np.ndarray:
        return session.run(["alpha"], {"image": photo[None]})[0][0]

    return alpha_of


def _run_keras(path: Path, threads: int | None) -> Callable:
    model = inference.load_model(path)
    predictor = inference.Predictor(model, inference.model_size(model))
    return lambda photo: keras_alpha(predictor, photo)  # results.py's alpha, as results.py runs the file


def load_exported(path: str | Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function photo -> alpha that runs an export with the runtime a client would use:
    TensorFlow for a SavedModel folder, LiteRT for .tflite, ONNX Runtime for .onnx.

    Args:
        path: what ``export`` wrote.
        threads: CPU threads for LiteRT and ONNX Runtime (default: every core); TensorFlow
            sets its thread pools once per process (tf.config.threading).

    Returns:
        ``alpha_of``: (H, W, 3) uint8 RGB -> (H, W) uint8 alpha.
    """
    path = Path(path)
    if path.is_dir():
        fmt = "saved_model"
    else:
        fmt = {suffix: fmt for fmt, suffix in SUFFIXES.items() if suffix}.get(path.suffix.lower())
    if fmt is None or not path.exists():
        raise ExportError(f"{path}: not an export (a SavedModel folder, a .tflite or an .onnx file)")
    check_format(fmt)
    runners = {"saved_model": _run_saved_model, "litert": _run_litert, "onnx": _run_onnx, "keras": _run_keras}
    return runners[fmt](path, threads)


# ---------------------------------------------------------------------------- checking an export


def sample_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like (height, width, 3) uint8 RGB image: smooth colour fields, a figure, sensor noise."""
    import cv2

    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.uniform(30, 220, (6, 8, 3)).astype(np.float32), (width, height), cv2.INTER_CUBIC)
    figure = np.zeros((height, width), np.float32)
    cv2.ellipse(figure, (width // 2, height * 3 // 4), (max(width // 6, 1), max(height // 3, 1)), 0, 0, 360, 1, -1)
    cv2.circle(figure, (width // 2, height // 3), max(min(height, width) // 8, 1), 1, -1)
    image = field * (1 - figure[..., None]) + rng.uniform(0, 255, 3) * figure[..., None]
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def keras_alpha(predictor: inference.Predictor, photo: np.ndarray, guided: bool = True) -> np.ndarray:
    """results.py's alpha of a photo: compose.person_alpha(photo, predictor(images.squash(photo, size)))."""
    prob = predictor(images.squash(photo, predictor.image_size)[None])[0]
    return compose.person_alpha(photo, prob, guided=guided)


def check(alpha_of: Callable, predictor: inference.Predictor, sizes=CHECK_SIZES, guided: bool = True) -> dict:
    """{(height, width): largest |exported alpha - results.py's alpha|} on generated photos."""
    differences = {}
    for seed, (height, width) in enumerate(sizes):
        photo = sample_photo(height, width, seed)
        got = alpha_of(photo)
        if got.shape != (height, width) or got.dtype != np.uint8:
            raise ExportError(f"the export returned {got.dtype} {got.shape} for a {height}x{width} photo")
        expected = keras_alpha(predictor, photo, guided)
        differences[(height, width)] = int(np.abs(got.astype(np.int16) - expected).max())
    return differences
