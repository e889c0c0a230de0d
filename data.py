"""The tf.data input pipeline: one split folder in, batches of (image, mask) out.

A split folder is what coco.py writes:

    SPLIT/images/<stem>.jpg    photos (any size; squashed to the model's if they differ)
    SPLIT/masks/<stem>.png     person masks, 0/255 (or 0/1), the same stem as the photo

Every pair is read with ``images.load_photo`` and ``images.load_mask``, the preprocessing
that inference uses too, so a photo gives the model the same input in training,
evaluation and cutouts. Batches hold images scaled to [0, 1] float32 and masks in {0, 1}
float32: (batch, size, size, 3) and (batch, size, size, 1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

import images

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
HOW_TO_BUILD = (
    "build it with `python coco.py --coco-dir COCO --out data` or `python coco.py --sample --out data-sample`"
)


class DataError(ValueError):
    """A split folder that is missing, empty or inconsistent; the message says what to do."""


def _image_files(folder: Path) -> dict[str, Path]:
    """The image files of a folder by stem (``images.list_images``); a repeated stem is an error."""
    files = {}
    for path in images.list_images(folder):
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


def load_pair(image_path: str, mask_path: str, image_size: int):
    """One pair as the model sees it: (size, size, 3) uint8 photo, (size, size, 1) uint8 0/1 mask.

    Raises:
        images.ImageReadError: a file that does not decode, or a photo and mask of different
            sizes (with ``image_size`` 0, which keeps the stored size).
    """
    photo = images.load_photo(image_path, image_size)
    mask = images.load_mask(mask_path, image_size)
    if photo.shape[:2] != mask.shape[:2]:
        raise images.ImageReadError(
            f"{mask_path}: {mask.shape[1]}x{mask.shape[0]}, but its photo is {photo.shape[1]}x{photo.shape[0]}"
        )
    return photo, mask[..., None]


def load_split(split_dir: str | Path, image_size: int = 128, with_index: bool = False) -> tf.data.Dataset:
    """Reads a split once into an in-memory cache of uint8 (image, mask) pairs.

    Pairs are read in parallel (``load_pair``) on the first pass, which also finds the
    files that do not decode: they are logged by name and left out, so a corrupt file never
    stops an epoch. Later passes read the cache (uint8: 64 KB a pair at 128x128).

    Returns:
        A finite dataset of ((size, size, 3) uint8, (size, size, 1) uint8 in {0, 1}) with
        known cardinality; with ``with_index`` a third element, the pair's position in
        ``find_pairs(split_dir)``.
    """
    image_paths, mask_paths = find_pairs(split_dir)
    failures = {}

    def load(index):
        try:
            return load_pair(image_paths[index], mask_paths[index], image_size)
        except images.ImageReadError as e:
            failures[int(index)] = str(e)
            raise

    def decode(index):
        photo, mask = tf.numpy_function(load, [index], [tf.uint8, tf.uint8], stateful=False)
        photo.set_shape([image_size or None, image_size or None, 3])
        mask.set_shape([image_size or None, image_size or None, 1])
        return index, photo, mask

    indexed = tf.data.Dataset.range(len(image_paths))
    decoded = indexed.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors().cache()
    good = {int(i) for i in decoded.map(lambda i, image, mask: i)}  # fills the cache
    if failures:
        log.warning(
            "%s: skipped %d unreadable pair(s): %s", split_dir, len(failures), _listing(list(failures.values()))
        )
    if not good:
        raise DataError(f"{split_dir}: none of the {len(image_paths)} pairs could be read")
    pairs = decoded.map(lambda i, image, mask: (image, mask, i) if with_index else (image, mask))
    return pairs.apply(tf.data.experimental.assert_cardinality(len(good)))


def to_float(image: tf.Tensor, mask: tf.Tensor, *rest) -> tuple:
    """uint8 pair -> image in [0, 1] and mask in {0, 1}, both float32 (rescale=1/255)."""
    return (tf.cast(image, tf.float32) / 255.0, tf.cast(mask, tf.float32), *rest)


# Augmentation (train.py --augment). The original trained on the squashed photos as they are;
# these widen the training distribution beyond its framing: upper-body and zoomed crops,
# other aspect ratios, mirror images, other lighting and colours.
# A third of the pairs keep the whole photo: trained on crops alone, a network learns the
# crops' scale and misses the people of the whole photos (measured on real photos).
WHOLE = 1 / 3  # probability of no crop
UPPER_BODY = 1 / 3  # probability of a crop from the top of the photo (head and shoulders)
ZOOM = (0.6, 1.0)  # crop side, as a fraction of the photo's, for the other crops
COLOUR = dict(brightness=0.15, contrast=(0.7, 1.3), saturation=(0.6, 1.4), hue=0.05)


def random_crop_box(seed: tf.Tensor) -> tf.Tensor:
    """A crop [y0, x0, y1, x1] in [0, 1] coordinates, its aspect ratio jittered.

    With probability WHOLE the whole photo; with probability UPPER_BODY a box that starts
    near the top and keeps 35-80% of the height (an upper-body crop of a full-figure
    photo); otherwise each side a random fraction ZOOM of the photo's, anywhere in it.
    """
    u = tf.random.stateless_uniform([5], seed)
    upper = u[0] < UPPER_BODY
    whole = u[0] >= 1.0 - WHOLE
    height = tf.where(upper, 0.35 + 0.45 * u[1], ZOOM[0] + (ZOOM[1] - ZOOM[0]) * u[1])
    width = ZOOM[0] + (ZOOM[1] - ZOOM[0]) * u[2]  # independent: the aspect ratio changes
    y0 = tf.where(upper, 0.1 * u[3], (1.0 - height) * u[3])
    x0 = (1.0 - width) * u[4]
    box = tf.stack([y0, x0, y0 + height, x0 + width])
    return tf.where(whole, tf.constant([0.0, 0.0, 1.0, 1.0]), box)


def crop(both: tf.Tensor, box: tf.Tensor, size: int | None) -> tf.Tensor:
    """The ``box`` of a (h, w, c) image resized to (size, size); size None: to (h, w).

    Cropping to the input size samples the box bilinearly in one step (enlarging a crop of
    the input-size photo). From a larger photo (``--crop-from``) the box is cut out at its
    own resolution first and then shrunk with antialiasing, so that a crop is as sharp as
    a photo squashed to the input size, not aliased.
    """
    batch = both[None]
    if size is None:
        return tf.image.crop_and_resize(batch, box[None], [0], tf.shape(both)[:2], method="bilinear")[0]
    source = tf.cast(tf.shape(both)[:2], tf.float32)
    pixels = tf.maximum(tf.cast(tf.round((box[2:] - box[:2]) * source), tf.int32), 1)
    cut = tf.image.crop_and_resize(batch, box[None], [0], pixels, method="bilinear")
    return tf.image.resize(cut, [size, size], method="bilinear", antialias=True)[0]


def augment(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, size: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Random crop, scale, aspect ratio, horizontal flip and colour jitter of one pair.

    The same geometry is applied to the image and its mask, so they stay aligned: the
    crop is resized to the input size (bilinear; the mask is re-thresholded at one half)
    and both are flipped together. Colour changes touch the image only.

    Args:
        image: (h, w, 3) float32 in [0, 1].
        mask: (h, w, 1) float32 in {0, 1}.
        seed: (2,) int seed; the same seed gives the same result.
        size: the output's height and width; None: the input's.

    Returns:
        (image, mask) of shapes (size, size, 3) and (size, size, 1), float32 in the same ranges.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    box = random_crop_box(seeds[0])
    both = crop(tf.concat([image, mask], axis=-1), box, size)
    flip = tf.random.stateless_uniform([], seeds[1]) < 0.5
    both = tf.cond(flip, lambda: tf.reverse(both, axis=[1]), lambda: both)
    image, mask = both[..., :3], tf.cast(both[..., 3:] >= 0.5, tf.float32)
    c = COLOUR
    image = tf.image.stateless_random_brightness(image, c["brightness"], seeds[2])
    image = tf.image.stateless_random_contrast(image, *c["contrast"], seeds[3])
    image = tf.image.stateless_random_saturation(image, *c["saturation"], seeds[4])
    image = tf.image.stateless_random_hue(image, c["hue"], seeds[5])
    return tf.clip_by_value(image, 0.0, 1.0), mask


def batches(
    pairs: tf.data.Dataset,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 1,
    repeat: bool = False,
    augmented: bool = False,
    augment_size: int | None = None,
) -> tf.data.Dataset:
    """uint8 pairs from ``load_split`` -> shuffled, repeated, float32 batches, prefetched.

    Args:
        pairs: a dataset from ``load_split``.
        batch_size: images per batch (the last batch may be smaller unless ``repeat``).
        shuffle: reshuffle every pass through the data, from ``seed``.
        seed: shuffle and augmentation seed (the original used 1).
        repeat: repeat forever (training counts steps, not passes).
        augmented: apply ``augment`` to every pair, with seeds drawn from ``seed``.
        augment_size: the augmented crops' size, when the pairs are larger (``--crop-from``).
    """
    if shuffle:
        pairs = pairs.shuffle(int(pairs.cardinality()), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        pairs = pairs.repeat()
    pairs = pairs.map(to_float, num_parallel_calls=AUTOTUNE)
    if augmented:
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        pairs = tf.data.Dataset.zip(pairs, seeds).map(
            lambda pair, s: augment(*pair, s, augment_size), num_parallel_calls=AUTOTUNE, deterministic=True
        )
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


def split_stats(split_dir: str | Path) -> dict:
    """What a split folder holds: {'images', 'sizes' {'HxW': count}, 'coverage'}.

    ``coverage`` is the mean fraction of a photo covered by its person mask. Unreadable
    pairs are skipped (and logged) as in training.
    """
    sizes, coverage = {}, []
    for image, mask in load_split(split_dir, image_size=0).as_numpy_iterator():
        key = f"{image.shape[1]}x{image.shape[0]}"
        sizes[key] = sizes.get(key, 0) + 1
        coverage.append(float((mask > 0).mean()))
    return {"images": len(coverage), "sizes": sizes, "coverage": sum(coverage) / max(len(coverage), 1)}


def main(argv=None) -> int:
    """python data.py SPLIT_DIR...: the statistics of each split folder."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Report split folders: photos, sizes, mean mask coverage.")
    parser.add_argument("splits", nargs="+", help="split folders with images/ and masks/, e.g. data/train")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s: %(message)s")
    status = 0
    for split in args.splits:
        try:
            s = split_stats(split)
        except DataError as e:
            print(f"data.py: error: {e}", file=sys.stderr)
            status = 2
            continue
        sizes = ", ".join(f"{k} ({v})" for k, v in sorted(s["sizes"].items(), key=lambda kv: -kv[1]))
        print(f"{split}: {s['images']} pairs, sizes {sizes}, mean person coverage {100 * s['coverage']:.1f}%")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
