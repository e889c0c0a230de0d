"""Reading, preprocessing and writing photos and masks with OpenCV: the one place that does it.

``load_photo`` and ``load_mask`` are the preprocessing of the whole project: coco.py and
ccp.py squash with them when they write the dataset folders, the tf.data pipeline
(data.py) reads training and evaluation pairs with them, and inference (cutouts, videos,
export parity) squashes photos with them, so a file gives the model the same input
whichever path reads it. Arrays are uint8 RGB, (height, width, 3); masks are uint8 0/1,
(height, width).

The EXIF rule: a photo is what a viewer shows, so its EXIF orientation is applied
(phones store portraits sideways and say so in EXIF), for photos and masks alike, in
training, evaluation and inference. The one exception is a source photo whose annotations
index the stored pixels (COCO's polygons, Clothing Co-Parsing's label maps): coco.py and
ccp.py read those with ``apply_exif=False``; the folders they write carry no EXIF.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from isal import isal_zlib
from PIL import Image, ImageOps

# What coco.py writes and results.py looks for when it walks a folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


# The U-net pools five times, so the sizes it takes (and the dataset folders are written at)
# are multiples of 2**5.
SIZE_MULTIPLE = 32
# The original's input size, 128x128: the default of train.py's --image-size and of the
# converters' --size, and the size inference squashes to for a model that takes any size.
DEFAULT_SIZE = 128


def check_size(value, name: str = "size", allow_zero: bool = False) -> None:
    """Raises ValueError unless ``value`` gives a height and width the U-net takes: positive multiples of 32.

    The one check of an image size, for the command lines (--size, --image-size) and
    ``model.build_unet``'s input_shape.

    Args:
        value: one size (the height and the width), or a shape (height, width, ...) whose
            None entries take any size.
        name: the argument, as the message names it.
        allow_zero: 0 is allowed too (the converters' --size 0: each photo as stored).
    """
    sides = tuple(value[:2]) if isinstance(value, (tuple, list)) else (value, value)
    if all(side is None or (allow_zero and side == 0) or (side > 0 and side % SIZE_MULTIPLE == 0) for side in sides):
        return
    zero = "0 (as stored) or " if allow_zero else ""
    raise ValueError(
        f"{name}: the height and width must be {zero}positive multiples of {SIZE_MULTIPLE} (the U-net pools five "
        f"times). Received: {name}={value}"
    )


class ImageReadError(ValueError):
    """A file that is missing, empty, not an image, or corrupt; the message names it."""


class WriteError(OSError):
    """A file or folder that cannot be written (a full disk, no permission, a file in the way).

    The message names it and the cause: 'cannot write cutouts/me.png: No space left on device'.
    """

    @classmethod
    def of(cls, path: str | Path, error: OSError) -> WriteError:
        """The WriteError of ``path`` for the OSError that writing it (or a temporary name of it) raised."""
        written = cls(f"cannot write {path}: {error.strerror or error}")
        written.errno = error.errno
        return written


def _decode(path: str | Path, flags: int, apply_exif: bool) -> np.ndarray:
    """cv2.imdecode of a file, with ImageReadError naming the file on any failure."""
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)  # np.fromfile: also non-ASCII names on Windows
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None
    return _decode_bytes(data, path, flags, apply_exif)


def _decode_bytes(data: np.ndarray, name: str | Path, flags: int, apply_exif: bool) -> np.ndarray:
    """cv2.imdecode of a file's bytes (uint8), with ImageReadError naming ``name`` on any failure."""
    if data.size == 0:
        raise ImageReadError(f"{name}: empty file")
    if not apply_exif:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as e:  # e.g. larger than OpenCV's pixel limit
        raise ImageReadError(f"{name}: cannot decode ({str(e).strip().splitlines()[-1]})") from None
    if image is None:
        raise ImageReadError(f"{name}: not an image in a supported format, or corrupt/truncated")
    return image


def read_rgb(path: str | Path, apply_exif: bool = True) -> np.ndarray:
    """Reads any common photo as uint8 RGB.

    Grayscale, palette, RGBA (alpha dropped), 16-bit, CMYK JPEG and WebP are converted.

    Args:
        path: the photo.
        apply_exif: rotate as the EXIF orientation says (see the module docstring).

    Returns:
        (height, width, 3) uint8 RGB array.

    Raises:
        ImageReadError: with the file's name and the reason.
    """
    return _decode(path, cv2.IMREAD_COLOR_RGB, apply_exif)  # decoded as RGB: no BGR-to-RGB pass


def decode_rgb(data: bytes, name: str = "the photo", apply_exif: bool = True) -> np.ndarray:
    """``read_rgb`` of a file's bytes already in memory (an upload): the same pixels as reading the file.

    Raises:
        ImageReadError: naming ``name`` and the reason.
    """
    return _decode_bytes(np.frombuffer(data, np.uint8), name, cv2.IMREAD_COLOR_RGB, apply_exif)


def read_gray(path: str | Path, apply_exif: bool = True) -> np.ndarray:
    """Reads any image as one uint8 channel (a colour image's luminance).

    Raises:
        ImageReadError: with the file's name and the reason.
    """
    return _decode(path, cv2.IMREAD_GRAYSCALE, apply_exif)


def read_mask(path: str | Path, apply_exif: bool = True) -> np.ndarray:
    """Reads a person mask as uint8 0/1: 0/255 masks (ours) and 0/1 masks (the original's) alike.

    Raises:
        ImageReadError: with the file's name and the reason.
    """
    gray = read_gray(path, apply_exif)
    return (gray > (127 if gray.max() > 1 else 0)).astype(np.uint8)


def read_values(path: str | Path, apply_exif: bool = True) -> np.ndarray:
    """Reads an image's values as stored, for masks whose values are labels (instance ids), not brightness.

    8 or 16 bits, one channel or three; a palette image's indices (OpenCV gives its colours).

    Raises:
        ImageReadError: with the file's name and the reason.
    """
    image = _decode(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR, apply_exif)
    if image.ndim == 3:
        with contextlib.suppress(OSError), Image.open(path) as pil:
            if pil.mode == "P":
                return np.asarray(ImageOps.exif_transpose(pil) if apply_exif else pil)
    return image


def read_mat(path: str | Path, variable_names: list[str] | None = None) -> dict:
    """The variables of a MATLAB file (``scipy.io.loadmat``; MATLAB's own entries, ``__header__`` etc., left out).

    Raises:
        ImageReadError: the file is not a MATLAB file scipy reads (corrupt, or MATLAB v7.3).
    """
    import scipy.io  # here: importing this module stays light for inference

    try:
        contents = scipy.io.loadmat(path, variable_names=variable_names)
    except Exception as e:
        # scipy's reader fails on corrupt files with many types (MatReadError, ValueError,
        # IndexError, TypeError, OSError, zlib.error, NotImplementedError for v7.3 files).
        raise ImageReadError(f"{path}: cannot read as a MATLAB file ({type(e).__name__}: {e})") from None
    return {name: value for name, value in contents.items() if not name.startswith("__")}


def read_rgba(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads a photo and its alpha channel: (uint8 RGB, uint8 alpha or None if it has none).

    16-bit files are scaled to 8 bits. The pixels are read as stored: OpenCV applies no EXIF
    orientation when it keeps the alpha channel (RGBA PNG and WebP files rarely carry one).

    Raises:
        ImageReadError: with the file's name and the reason.
    """
    image = _decode(path, cv2.IMREAD_UNCHANGED, apply_exif=False)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{path}: {image.dtype} pixels, expected 8 or 16 bits")
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), np.ascontiguousarray(image[..., 3])
    return read_rgb(path), None


def squash(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes to (size, size) without keeping the aspect ratio, as the original did.

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    height, width = image.shape[:2]
    shrink = size * size < height * width
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def squash_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resizes a 0/1 mask like ``squash`` resizes its image, and keeps it binary.

    The mask is resized as a coverage fraction with the image's interpolation and then
    thresholded at one half, so it stays aligned with the image (nearest-neighbour
    resizing would shift it by up to half a source pixel).
    """
    coverage = squash(mask.astype(np.float32), size)
    return (coverage >= 0.5).astype(np.uint8)


def load_photo(path: str | Path, size: int, apply_exif: bool = True) -> np.ndarray:
    """The model's input from a photo file: ``squash(read_rgb(path), size)`` (size 0: as stored)."""
    photo = read_rgb(path, apply_exif)
    return squash(photo, size) if size else photo


def load_mask(path: str | Path, size: int, apply_exif: bool = True) -> np.ndarray:
    """The target from a mask file: ``squash_mask(read_mask(path), size)`` (size 0: as stored)."""
    mask = read_mask(path, apply_exif)
    return squash_mask(mask, size) if size else mask


def thumbnail(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Shrinks so the longest side is at most ``size``, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def list_images(folder: str | Path, recursive: bool = False, extensions: tuple = IMAGE_EXTENSIONS) -> list[Path]:
    """The image files of a folder (or other ``extensions``) in sorted order, hidden files skipped.

    Hidden files include the temporary names of ``write_atomic`` and ``tmp_name``.
    """
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in extensions and not p.name.startswith(".") and p.is_file())


def encode(image: np.ndarray, ext: str, quality: int = 95) -> bytes:
    """Encodes an RGB/RGBA uint8 array, or a 2-D gray one, as ``ext`` ('.jpg', '.png' or '.webp')."""
    if ext.lower() == ".webp":
        return _encode_webp(image)
    if ext.lower() == ".png" and image.dtype == np.uint8 and image.ndim in (2, 3):
        return encode_png(image)
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
        image = cv2.cvtColor(image, code)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as {ext}")
    return buffer.tobytes()


# PNG colour types by channel count: gray, RGB, RGBA (8 bits each).
PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}
PNG_LEVEL = 1  # ISA-L's level 1: smaller files than OpenCV's zlib level 1, several times faster


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_png(image: np.ndarray) -> bytes:
    """A lossless 8-bit PNG of a gray, RGB or RGBA uint8 array, written here rather than by OpenCV.

    Every row gets PNG's "Sub" filter (each byte minus the same channel of the pixel to its
    left: a flat background or a run of one alpha becomes zeros), and the rows are compressed
    with ISA-L's deflate (the ``isal`` package), which is several times faster than the zlib
    inside OpenCV's encoder for a file of about the same size: most of a cutout's time went
    to its PNG (benchmarks/results_speed.py). Any PNG reader reads it.
    """
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    flat = np.ascontiguousarray(image).reshape(height, width * channels)
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 1  # the Sub filter
    rows[:, 1 : 1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=rows[:, 1 + channels :])  # wraps modulo 256, as PNG does
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    data = isal_zlib.compress(rows, PNG_LEVEL)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _encode_webp(image: np.ndarray) -> bytes:
    """Lossless WebP at the encoder's fastest effort, through Pillow (matplotlib's dependency).

    Lossless keeps every visible pixel and the alpha exactly; the colour under fully
    transparent pixels is not kept (that is most of the saving over PNG). OpenCV's WebP
    encoder has no effort setting and takes several times longer for the same file.
    """
    buffer = io.BytesIO()
    try:
        Image.fromarray(image).save(buffer, "WEBP", lossless=True, quality=0, method=0)
    except (OSError, ValueError) as e:  # e.g. a side over WebP's 16383-pixel limit
        raise ValueError(f"cannot encode an image of shape {image.shape} as .webp ({e})") from None
    return buffer.getvalue()


def tmp_name(path: str | Path, keep_suffix: bool = False) -> Path:
    """The hidden temporary name a file is written under before it is renamed to ``path``.

    ``keep_suffix`` puts the suffix last (``.<stem>.<pid>.tmp<suffix>``), for writers that
    pick the format from it (Keras, FFmpeg, LiteRT); ``write_atomic`` writes the bytes
    itself and uses ``.<name>.<pid>.tmp``, which ``remove_stale_tmp`` clears.
    """
    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to a hidden temporary name beside ``path``, then renames it.

    An interrupted or failed write never leaves a partial file under the final name, nor
    the temporary file.

    Raises:
        WriteError: naming ``path`` and the cause (a full disk, no permission, no folder).
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError.of(path, e) from None
    finally:
        remove_tmp(tmp)


def remove_tmp(tmp: Path) -> None:
    """Removes a temporary file if it is there (its folder may be missing, or a file: nothing to remove)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        tmp.unlink()


def remove_stale_tmp(folder: str | Path) -> int:
    """Removes temporary files that an interrupted ``write_atomic`` left; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
