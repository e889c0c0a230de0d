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

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import numpy as np
import tensorflow as tf

import augmentation
import folders
import images

if TYPE_CHECKING:  # for the annotations only: config.py builds on Keras and the model
    from config import TrainConfig

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
CUTOUT_MARGIN = 0.05  # with --scenes: the empty margin round a cutout, a share of its longer side (see letterbox)
HOW_TO_BUILD = (
    "build it with `python coco.py --coco-dir COCO --out data` or `python coco.py --sample --out data-sample`"
)


def _image_files(folder: Path) -> dict[str, Path]:
    """The image files of a folder by stem (``images.list_images``); a repeated stem is an error."""
    files = {}
    for path in images.list_images(folder):
        if path.stem in files:
            raise folders.DatasetError(
                f"{folder}: two files with the stem {path.stem!r}: {files[path.stem].name} and {path.name}"
            )
        files[path.stem] = path
    return files


def find_pairs(split_dir: str | Path) -> tuple[list[str], list[str]]:
    """Pairs SPLIT/images/* with SPLIT/masks/* by file stem.

    Returns:
        (image_paths, mask_paths), sorted by stem.

    Raises:
        folders.DatasetError: a folder is missing or empty, or some files have no partner (listed).
    """
    split_dir = Path(split_dir)
    for folder in (split_dir, split_dir / "images", split_dir / "masks"):
        if not folder.is_dir():
            raise folders.DatasetError(f"{folder} not found: {HOW_TO_BUILD}")
    photos, masks = _image_files(split_dir / "images"), _image_files(split_dir / "masks")
    if not photos:
        raise folders.DatasetError(f"no images in {split_dir / 'images'}: {HOW_TO_BUILD}")
    lonely_photos = sorted(photos[s].name for s in photos.keys() - masks.keys())
    lonely_masks = sorted(masks[s].name for s in masks.keys() - photos.keys())
    if lonely_photos or lonely_masks:
        raise folders.DatasetError(
            f"{split_dir}: every image needs a mask with the same file stem; "
            f"images without a mask: {cli.listing(lonely_photos) or 'none'}; "
            f"masks without an image: {cli.listing(lonely_masks) or 'none'}"
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


def _read_once(count: int, load, shapes: list, what: str, noun: str = "file") -> tuple[tf.data.Dataset, int]:
    """Items 0..count-1 read by ``load(index)`` in parallel into an in-memory cache.

    ``load`` returns a tuple of uint8 arrays of ``shapes`` (None: any size) or raises
    ImageReadError; such items are logged by name and left out. Returns the cached
    (index, *arrays) dataset and how many items it holds.
    """
    failures = {}

    def guarded(index):
        try:
            return load(int(index))
        except images.ImageReadError as e:
            failures[int(index)] = str(e)
            raise

    def decode(index):
        arrays = tf.numpy_function(guarded, [index], [tf.uint8] * len(shapes), stateful=False)
        for array, shape in zip(arrays, shapes, strict=True):
            array.set_shape(shape)
        return (index, *arrays)

    indexed = tf.data.Dataset.range(count)
    decoded = indexed.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors().cache()
    good = sum(1 for _ in decoded.map(lambda i, *arrays: i))  # fills the cache
    if failures:
        log.warning(
            "%s: skipped %d unreadable %s(s): %s", what, len(failures), noun, cli.listing(list(failures.values()))
        )
    if not good:
        raise folders.DatasetError(f"{what}: none of the {count} {noun}s could be read")
    return decoded, good


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
    side = image_size or None
    decoded, good = _read_once(
        len(image_paths),
        lambda i: load_pair(image_paths[i], mask_paths[i], image_size),
        [[side, side, 3], [side, side, 1]],
        str(split_dir),
        "pair",
    )
    pairs = decoded.map(lambda i, image, mask: (image, mask, i) if with_index else (image, mask))
    return pairs.apply(tf.data.experimental.assert_cardinality(good))


def load_backgrounds(folders_: str | Path | list, image_size: int) -> tf.data.Dataset:
    """Photos without people (train.py --backgrounds), read once into a cache of (size, size, 3) uint8 squashes.

    Args:
        folders_: one folder or several; each is searched with its subfolders (releases nest
            their photos by class or split).
        image_size: the squashes' height and width.

    Raises:
        folders.DatasetError: a folder is missing or holds no photo, or none of the photos reads.
    """
    paths = []
    for folder in [folders_] if isinstance(folders_, str | Path) else folders_:
        folder = Path(folder)
        if not folder.is_dir():
            raise folders.DatasetError(
                f"--backgrounds {folder}: no such folder (give a folder of photos without people)"
            )
        found = images.list_images(folder, recursive=True)
        if not found:
            raise folders.DatasetError(
                f"--backgrounds {folder}: no photos ({', '.join(images.IMAGE_EXTENSIONS)}) in it or its subfolders"
            )
        paths += found
    what = "--backgrounds " + " ".join(str(f) for f in ([folders_] if isinstance(folders_, str | Path) else folders_))
    decoded, good = _read_once(
        len(paths), lambda i: (images.load_photo(paths[i], image_size),), [[image_size, image_size, 3]], what
    )
    photos = decoded.map(lambda i, photo: photo)
    return photos.apply(tf.data.experimental.assert_cardinality(good))


def letterbox(photo: np.ndarray, mask: np.ndarray, size: int, margin: float = CUTOUT_MARGIN):
    """A cutout's (h, w, 3) photo and (h, w) 0/1 mask centred in a square with ``margin`` of its side all round.

    Squashed to a square instead, a cutout (twice as tall as wide, cut tight around the
    person) would come out as wide as tall, and would seem cut by its photo on every side.
    Returns (size, size, 3) uint8 and (size, size, 1) uint8 0/1; the margin is no person.
    """
    height, width = mask.shape[:2]
    side = round(max(height, width) * (1 + 2 * margin))
    y0, x0 = (side - height) // 2, (side - width) // 2
    square = np.zeros((side, side, 3), np.uint8)
    square[y0 : y0 + height, x0 : x0 + width] = photo
    square_mask = np.zeros((side, side), np.uint8)
    square_mask[y0 : y0 + height, x0 : x0 + width] = mask
    return images.squash(square, size), images.squash_mask(square_mask, size)[..., None]


def load_cutouts(split_dir: str | Path, image_size: int) -> tf.data.Dataset:
    """A split of people cut out (photos.py of RGBA files), each pair ``letterbox``-ed: like ``load_split``.

    Raises:
        folders.DatasetError: a missing or empty split folder, or none of its pairs reads.
    """
    image_paths, mask_paths = find_pairs(split_dir)

    def load(i):
        photo, mask = load_pair(image_paths[i], mask_paths[i], 0)
        return letterbox(photo, mask[..., 0], image_size)

    shapes = [[image_size, image_size, 3], [image_size, image_size, 1]]
    decoded, good = _read_once(len(image_paths), load, shapes, str(split_dir), "pair")
    pairs = decoded.map(lambda i, image, mask: (image, mask))
    return pairs.apply(tf.data.experimental.assert_cardinality(good))


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
    return pairs.map(to_float, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=repeat).prefetch(AUTOTUNE)


def _forever(pairs: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    return pairs.shuffle(int(pairs.cardinality()), seed=seed, reshuffle_each_iteration=True).repeat()


def _drawn(sources: list[tf.data.Dataset], weights: list[float], seed: int) -> tf.data.Dataset:
    """Each source shuffled and repeated, drawn by weight (in proportion to their sizes: ``weights`` empty)."""
    streams = [_forever(pairs, seed + i) for i, pairs in enumerate(sources)]
    if len(streams) == 1:
        return streams[0]
    weights = weights or [float(pairs.cardinality()) for pairs in sources]
    return tf.data.Dataset.sample_from_datasets(streams, [w / sum(weights) for w in weights], seed=seed)


def training_batches(
    sources: list[tf.data.Dataset],
    batch_size: int = 32,
    seed: int = 1,
    weights: list[float] | None = None,
    augmented: bool = False,
    augment_size: int | None = None,
    backgrounds: tf.data.Dataset | None = None,
    composite_rate: float | list[float] = 0.0,
    cutouts: tf.data.Dataset | None = None,
    scenes: bool = False,
) -> tf.data.Dataset:
    """The training stream: each source's pairs shuffled and repeated, drawn by weight, augmented, batched.

    With one source and no augmentation this is ``batches(pairs, shuffle=True, repeat=True)``.

    Args:
        sources: datasets from ``load_split``, one per training folder.
        batch_size: images per batch.
        seed: shuffling, source-drawing and augmentation seed.
        weights: how often each source is drawn, relative to the others; None: in
            proportion to their sizes (as if they were one merged folder).
        augmented: apply ``augmentation.augment`` to every pair.
        augment_size: the output size, when the pairs are larger (``--crop-from``).
        backgrounds: photos without people from ``load_backgrounds``; with
            ``composite_rate`` > 0, that share of the pairs is laid over them.
        composite_rate: that share, for every source, or a list of one share per source.
        cutouts: pairs of people cut out (``load_split`` of a cutout folder; with ``scenes``,
            ``load_cutouts``): the person of some composites (``augmentation.CUTOUT_SHARE``),
            never shown on their own.
        scenes: composites are ``augmentation.scene``-s; their second and third people are
            drawn (by weight) from the sources whose share is above 0, and from the cutouts.

    Returns:
        An endless dataset of (images (batch, size, size, 3), masks (batch, size, size, 1)), float32.
    """
    rates = list(composite_rate) if isinstance(composite_rate, list | tuple) else [composite_rate] * len(sources)
    if len(rates) != len(sources):
        raise ValueError(f"composite_rate needs one share per source ({len(sources)}). Received: {rates}")
    composited = augmented and backgrounds is not None and max(rates) > 0
    if composited and len(set(rates)) > 1:  # each pair carries its source's share
        sources = [
            pairs.map(lambda *pair, r=r: (*pair, tf.constant(r, tf.float32)))
            for pairs, r in zip(sources, rates, strict=True)
        ]
    stream = _drawn(sources, weights, seed).map(to_float, num_parallel_calls=AUTOTUNE)
    if augmented:
        extras = {"seeds": tf.data.Dataset.random(seed=seed).batch(2)}
        if composited:
            extras["background"] = _forever(backgrounds, seed + 1000).map(lambda b: tf.cast(b, tf.float32) / 255.0)
            if cutouts is not None:
                extras["cutout"] = _forever(cutouts, seed + 1001).map(to_float)
                if scenes:
                    extras["cutout"] = extras["cutout"].batch(3)
            if scenes:
                # The second and third people: from the sources whose people are pasted at all.
                pasted = [i for i, r in enumerate(rates) if r > 0]
                people = _drawn(
                    [sources[i] for i in pasted], [weights[i] for i in pasted] if weights else [], seed + 2000
                )
                extras["others"] = people.map(lambda image, mask, *rate: to_float(image, mask)).batch(2)

        def view(pair, extra):
            image, mask, *rate = pair
            return augmentation.augment(
                image,
                mask,
                extra["seeds"],
                augment_size,
                extra.get("background"),
                rate[0] if rate else rates[0],
                extra.get("cutout"),
                extra.get("others"),
                scenes,
            )

        stream = tf.data.Dataset.zip(stream, extras).map(view, num_parallel_calls=AUTOTUNE, deterministic=True)
    return stream.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


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


# ---------------------------------------------------------------------------- train.py's pipelines


@dataclass
class Datasets:
    """What train.py fits on (``for_training``)."""

    train: tf.data.Dataset  # endless shuffled (and augmented) batches from every source
    val: dict  # source name -> its val batches
    calibration: object  # an iterator of training batches (augmented like training) for --precise-bn, or None
    train_images: dict  # source name -> training photos


def for_training(config: TrainConfig, epochs_done: int) -> Datasets:
    """train.py's pipelines from its options; a resumed run draws new shuffles from its epoch.

    Raises:
        folders.DatasetError: a missing or empty split folder.
    """
    seed, data_dirs = config.seed + epochs_done, [Path(d) for d in config.data_dir]
    crop_size = config.crop_from or config.image_size
    sources = [load_split(d / "train", crop_size) for d in data_dirs]
    val = {
        name: make_dataset(d / "val", config.image_size, config.batch_size)
        for name, d in zip(config.source_names, data_dirs, strict=True)
    }
    backgrounds = load_backgrounds(list(config.backgrounds), crop_size) if config.backgrounds else None
    load_people = load_cutouts if config.scenes else load_split
    cutouts = load_people(Path(config.cutouts) / "train", crop_size) if config.cutouts else None

    def batches(seed: int) -> tf.data.Dataset:
        return training_batches(
            sources,
            config.batch_size,
            seed,
            list(config.weights) or None,
            augmented=config.augment,
            augment_size=config.image_size if config.crop_from else None,
            backgrounds=backgrounds,
            composite_rate=list(config.composite_shares),
            cutouts=cutouts,
            scenes=config.scenes,
        )

    train = batches(seed)
    if config.validation_steps:
        val = {name: v.take(config.validation_steps) for name, v in val.items()}
    if config.distribute == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train = train.with_options(options)
        val = {name: v.with_options(options) for name, v in val.items()}
    # --precise-bn: the statistics of what the weights were trained on (augmented, if so).
    calibration = iter(batches(seed + 1)) if config.precise_bn else None
    counts = {name: int(pairs.cardinality()) for name, pairs in zip(config.source_names, sources, strict=True)}
    return Datasets(train, val, calibration, counts)


def main(argv=None) -> int:
    """python data.py SPLIT_DIR...: the statistics of each split folder."""
    parser = argparse.ArgumentParser(
        description="Report split folders: photos, sizes, mean mask coverage.", formatter_class=cli.HelpFormatter
    )
    parser.add_argument("splits", nargs="+", help="split folders with images/ and masks/, e.g. data/train")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s: %(message)s")
    status = 0
    for split in args.splits:
        try:
            s = split_stats(split)
        except folders.DatasetError as e:
            cli.error("data.py", str(e))
            status = 2
            continue
        sizes = ", ".join(f"{k} ({v})" for k, v in sorted(s["sizes"].items(), key=lambda kv: -kv[1]))
        print(f"{split}: {s['images']} pairs, sizes {sizes}, mean person coverage {100 * s['coverage']:.1f}%")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
