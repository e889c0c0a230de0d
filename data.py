"""The tf.data input pipeline: one split folder in, batches of (image, mask) out.

A split folder is what coco.py writes:

    SPLIT/images/<stem>.jpg    photos (any size; resized to the model's if they differ)
    SPLIT/masks/<stem>.png     person masks, 0/255 (or 0/1), the same stem as the photo

``make_dataset`` is the one preprocessing path of train.py and results.py: images scaled
to [0, 1] float32, masks to {0, 1} float32, (batch, size, size, 3) and (batch, size, size, 1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

from images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
HOW_TO_BUILD = "build it with `python coco.py --coco-dir COCO --out data` or try `python train.py --demo`"


class DataError(ValueError):
    """A split folder that is missing, empty or inconsistent; the message says what to do."""


def _image_files(folder: Path) -> dict[str, Path]:
    """Image files of a folder by stem, hidden (temporary) files ignored."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(f"{folder}: two files with the stem {path.stem!r}: {files[path.stem].name} and {path.name}")
        files[path.stem] = path
    return files


def _listing(names: list[str], limit: int = 10) -> str:
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def find_pairs(split_dir: str | Path) -> tuple[list[str], list[str]]:
    """Pairs SPLIT/images/* with SPLIT/masks/* by file stem.

    Returns:
        (image_paths, mask_paths), sorted by stem.

    Raises:
        DataError: a folder is missing or empty, or some files have no partner (listed).
    """
    split_dir = Path(split_dir)
    for folder in (split_dir, split_dir / "images", split_dir / "masks"):
        if not folder.is_dir():
            raise DataError(f"{folder} not found: {HOW_TO_BUILD}")
    photos, masks = _image_files(split_dir / "images"), _image_files(split_dir / "masks")
    if not photos:
        raise DataError(f"no images in {split_dir / 'images'}: {HOW_TO_BUILD}")
    lonely_photos = sorted(photos[s].name for s in photos.keys() - masks.keys())
    lonely_masks = sorted(masks[s].name for s in masks.keys() - photos.keys())
    if lonely_photos or lonely_masks:
        raise DataError(
            f"{split_dir}: every image needs a mask with the same file stem; "
            f"images without a mask: {_listing(lonely_photos) or 'none'}; "
            f"masks without an image: {_listing(lonely_masks) or 'none'}"
        )
    stems = sorted(photos)
    return [str(photos[s]) for s in stems], [str(masks[s]) for s in stems]


def decode_image(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded photo -> (size, size, 3) uint8, resized (bilinear, antialiased) if needed."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if image_size:
        size = tf.constant([image_size, image_size])
        image = tf.cond(
            tf.reduce_all(tf.shape(image)[:2] == size),
            lambda: image,
            lambda: tf.cast(tf.round(tf.image.resize(image, size, antialias=True)), tf.uint8),
        )
    return image


def decode_mask(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded mask -> (size, size, 1) uint8 in {0, 1}; nearest resize keeps it binary."""
    mask = tf.io.decode_image(data, channels=1, expand_animations=False)
    mask.set_shape([None, None, 1])
    if image_size:
        mask = tf.image.resize(mask, [image_size, image_size], method="nearest")
    # 0/255 masks (ours) and 0/1 masks (the original's) both work.
    threshold = tf.where(tf.reduce_max(mask) > 1, tf.constant(127, mask.dtype), tf.constant(0, mask.dtype))
    return tf.cast(mask > threshold, tf.uint8)


def _why_unreadable(image_path: str, mask_path: str) -> str:
    """Names the file of a pair that does not decode, with TensorFlow's reason."""
    for path in (image_path, mask_path):
        try:
            tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            return f"{path} ({e.message.splitlines()[0] if hasattr(e, 'message') else e})"
    return f"{image_path} / {mask_path} (unreadable)"


def load_split(split_dir: str | Path, image_size: int = 128, with_index: bool = False) -> tf.data.Dataset:
    """Decodes a split once into an in-memory cache of uint8 (image, mask) pairs.

    Every pair is decoded in parallel on the first pass, which also finds the files that
    do not decode: they are logged by name and left out, so a corrupt file never stops an
    epoch. Later passes read the cache (uint8: 64 KB a pair at 128x128).

    Returns:
        A finite dataset of ((size, size, 3) uint8, (size, size, 1) uint8 in {0, 1}) with
        known cardinality; with ``with_index`` a third element, the pair's position in
        ``find_pairs(split_dir)``.
    """
    image_paths, mask_paths = find_pairs(split_dir)

    def decode(index, image_path, mask_path):
        image = decode_image(tf.io.read_file(image_path), image_size)
        mask = decode_mask(tf.io.read_file(mask_path), image_size)
        return index, image, mask

    indexed = tf.data.Dataset.from_tensor_slices((tf.range(len(image_paths)), image_paths, mask_paths))
    decoded = indexed.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors().cache()
    good = {int(i) for i in decoded.map(lambda i, image, mask: i)}  # fills the cache
    bad = [_why_unreadable(image_paths[i], mask_paths[i]) for i in range(len(image_paths)) if i not in good]
    if bad:
        log.warning("%s: skipped %d unreadable pair(s): %s", split_dir, len(bad), _listing(bad))
    if not good:
        raise DataError(f"{split_dir}: none of the {len(image_paths)} pairs could be decoded")
    pairs = decoded.map(lambda i, image, mask: (image, mask, i) if with_index else (image, mask))
    return pairs.apply(tf.data.experimental.assert_cardinality(len(good)))


def to_float(image: tf.Tensor, mask: tf.Tensor, *rest) -> tuple:
    """uint8 pair -> image in [0, 1] and mask in {0, 1}, both float32 (rescale=1/255)."""
    return (tf.cast(image, tf.float32) / 255.0, tf.cast(mask, tf.float32), *rest)


def batches(
    pairs: tf.data.Dataset, batch_size: int = 32, shuffle: bool = False, seed: int = 1, repeat: bool = False
) -> tf.data.Dataset:
    """uint8 pairs from ``load_split`` -> shuffled, repeated, float32 batches, prefetched.

    Args:
        pairs: a dataset from ``load_split``.
        batch_size: images per batch (the last batch may be smaller unless ``repeat``).
        shuffle: reshuffle every pass through the data, from ``seed``.
        seed: shuffle seed (the original used 1).
        repeat: repeat forever (training counts steps, not passes).
    """
    if shuffle:
        pairs = pairs.shuffle(int(pairs.cardinality()), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        pairs = pairs.repeat()
    pairs = pairs.map(to_float, num_parallel_calls=AUTOTUNE)
    return pairs.batch(batch_size, drop_remainder=repeat).prefetch(AUTOTUNE)


def make_dataset(
    split_dir: str | Path,
    image_size: int = 128,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 1,
    repeat: bool = False,
    with_index: bool = False,
) -> tf.data.Dataset:
    """The input pipeline of one split folder: ``batches(load_split(...))``.

    Args:
        split_dir: folder with images/ and masks/ (see the module docstring).
        image_size: height and width the model takes; 0 keeps the files' size.
        batch_size, shuffle, seed, repeat: see ``batches``.
        with_index: add each pair's position in ``find_pairs`` as a third element (for
            evaluation; Keras would read it as sample weights).

    Returns:
        Batches of (images (batch, size, size, 3), masks (batch, size, size, 1)), float32.
    """
    return batches(load_split(split_dir, image_size, with_index), batch_size, shuffle, seed, repeat)
