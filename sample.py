"""The built-in sample: a small synthetic dataset in COCO 2017's format.

    python sample.py --out data-sample/coco       # just the COCO-format files
    python coco.py --sample --out data-sample     # write them and run the real filter

Writes ``OUT/annotations/instances_{train,val}2017.json`` and JPEG photos in
``OUT/{train,val}2017/``, deterministic from a seed, so that coco.py, training and the
tests run through the real pycocotools code path without downloading COCO. Each photo has
a textured background, distractor objects annotated as other categories, and zero, one or
several drawn person figures (head, hair, neck, torso, arms, sometimes legs). Every figure
is painted by filling exactly the polygons of its annotation, so the annotation is the
ground truth. Crowd annotations are uncompressed RLE, as in COCO.

``write_sample`` returns, for every image id, what the original filter must do with it:
'kept', 'no_person', 'several_persons', 'too_small' or 'too_large'. Person areas stay at
least 1.5 points away from the 20% and 70% thresholds, so the answer is unambiguous.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

import cli
import images
from folders import COCO_PERSON, MAX_AREA, MIN_AREA

DISTRACTORS = {2: "bicycle", 3: "car", 18: "dog", 44: "bottle", 62: "chair", 64: "potted plant"}
CATEGORIES = [{"id": COCO_PERSON, "name": "person", "supercategory": "person"}] + [
    {"id": i, "name": n, "supercategory": "object"} for i, n in DISTRACTORS.items()
]
SIZES = [(640, 480), (480, 640), (512, 384), (384, 512), (640, 427), (427, 640), (400, 400), (320, 480)]
# Target person area fractions per reason (the filter keeps MIN_AREA < area < MAX_AREA), MARGIN
# away from its bounds.
AREA_RANGES = {"kept": (0.215, 0.685), "too_small": (0.06, 0.185), "too_large": (0.715, 0.84)}
# How often each case occurs; 'crowd_kept' is a lone crowd annotation inside the band (kept),
# 'crowd_pair' a crowd annotation beside a person (several_persons).
CASES = {
    "kept": 0.52,
    "crowd_kept": 0.04,
    "no_person": 0.1,
    "several_persons": 0.1,
    "crowd_pair": 0.04,
    "too_small": 0.1,
    "too_large": 0.1,
}
SOURCES = {"train2017": 1_000_000, "val2017": 2_000_000}  # image id offsets
MARGIN = 0.015  # distance of a person's area from the filter thresholds


def ellipse(cx, cy, rx, ry, n=20):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def quad(x0, y0, x1, y1, w0, w1):
    """A limb or torso: a quadrilateral from (x0, y0) (width w0) to (x1, y1) (width w1)."""
    d = np.array([x1 - x0, y1 - y0], float)
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    p0, p1 = np.array([x0, y0], float), np.array([x1, y1], float)
    return np.stack([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2])


def figure_parts(rng: np.random.Generator, legs: bool, breadth: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """A person at unit scale (head height about 1), top of the head at (0, 0).

    ``breadth`` widens the body: a close-up whose shoulders fill the bottom of the frame.
    Returns (kind, polygon) pairs; kind picks the colour (hair, skin, shirt, trousers).
    """
    head_w, shoulder = rng.uniform(0.75, 0.95), rng.uniform(2.0, 2.8) * breadth
    torso_h, waist = rng.uniform(2.6, 3.4), rng.uniform(1.5, 2.2) * breadth
    parts = [
        ("hair", ellipse(0, 0.45, head_w * 0.56, 0.55)),
        ("skin", ellipse(0, 0.6, head_w / 2, 0.55)),
        ("skin", quad(0, 1.0, 0, 1.45, 0.4, 0.45)),
        (
            "shirt",
            np.array(
                [[-shoulder / 2, 1.4], [shoulder / 2, 1.4], [waist / 2, 1.4 + torso_h], [-waist / 2, 1.4 + torso_h]]
            ),
        ),
    ]
    for side in (-1, 1):
        angle = rng.uniform(-0.35, 0.6)  # arm swing, radians from vertical
        x0, y0 = side * (shoulder / 2 - 0.2), 1.55
        length = rng.uniform(2.6, 3.3)
        x1, y1 = x0 + side * np.sin(angle) * length, y0 + np.cos(angle) * length
        parts.append(("shirt", quad(x0, y0, (x0 + x1) / 2, (y0 + y1) / 2, 0.55, 0.45)))
        parts.append(("skin", quad((x0 + x1) / 2, (y0 + y1) / 2, x1, y1, 0.45, 0.35)))
    if legs:
        for side in (-1, 1):
            x0, y0 = side * waist / 4, 1.3 + torso_h
            x1 = x0 + side * rng.uniform(0.0, 0.5)
            parts.append(("trousers", quad(x0, y0, x1, y0 + rng.uniform(3.2, 3.8), waist / 2, 0.45)))
    return parts


def place(parts, scale, cx, top, width, height) -> list[tuple[str, np.ndarray]]:
    """Scales and moves a figure, clamps it to the image and rounds to 0.1 px as COCO does."""
    # All parts in one array (the same values as part by part): the sizing search calls this thousands of times.
    p = np.concatenate([poly for _, poly in parts]) * scale + [cx, top]
    np.clip(p, 0, [width, height], out=p)
    p = np.round(p, 1)
    ends = np.cumsum([len(poly) for _, poly in parts])[:-1]
    return list(zip([kind for kind, _ in parts], np.split(p, ends), strict=True))


def rle_of(polys: list[np.ndarray], width: int, height: int) -> dict:
    rles = mask_utils.frPyObjects([p.ravel().tolist() for p in polys], height, width)
    return mask_utils.merge(rles)


def area_of(parts, width, height) -> float:
    return float(mask_utils.area(rle_of([p for _, p in parts], width, height))) / (width * height)


def sized_figure(rng, width, height, target, cx=None) -> list[tuple[str, np.ndarray]] | None:
    """A figure whose area fraction is within 0.4 points of ``target``, or None."""
    for attempt in range(8):  # wider and higher figures until the target is reachable
        parts = figure_parts(rng, legs=rng.random() < 0.5, breadth=1.0 + 0.3 * attempt)
        x = width * rng.uniform(0.3, 0.7) if cx is None else cx
        top = height * rng.uniform(0.02, 0.25) / (1 + attempt)
        # The smallest scale that reaches the target: grow in small steps, then bisect.
        # (The area is not monotonic in the scale: a huge figure leaves the frame.)
        lo, hi = 0.0, 0.01 * height
        while area_of(place(parts, hi, x, top, width, height), width, height) < target:
            lo, hi = hi, hi * 1.08
            if hi > 0.4 * height:  # the head alone would fill the photo
                break
        else:
            for _ in range(30):
                scale = (lo + hi) / 2
                placed = place(parts, scale, x, top, width, height)
                area = area_of(placed, width, height)
                if abs(area - target) < 0.004:
                    return placed
                lo, hi = (scale, hi) if area < target else (lo, scale)
    return None


def crowd_rle(rng, width, height, target) -> tuple[np.ndarray, dict] | None:
    """A crowd: several small figures; returns its 0/1 mask and uncompressed RLE."""
    for _ in range(10):
        mask = np.zeros((height, width), np.uint8)
        n = int(rng.integers(4, 9))
        for _ in range(n):
            parts = figure_parts(rng, legs=True)
            scale = height * rng.uniform(0.05, 0.1)
            placed = place(parts, scale, rng.uniform(0, width), rng.uniform(0.1, 0.6) * height, width, height)
            for _, p in placed:
                cv2.fillPoly(mask, [np.round(p).astype(np.int32)], 1)
        # Grow the group until its area reaches the target: crowd regions are blobs in COCO.
        kernel = np.ones((5, 5), np.uint8)
        for _ in range(60):
            area = mask.mean()
            if area >= target:
                break
            mask = cv2.dilate(mask, kernel)
        if abs(mask.mean() - target) < 0.03 and inside_band(mask.mean()) == inside_band(target):
            flat = mask.ravel(order="F")  # COCO's RLE runs down the columns
            change = np.flatnonzero(np.diff(flat)) + 1
            bounds = np.concatenate([[0], change, [flat.size]])
            counts = np.diff(bounds).tolist()
            if flat[0] == 1:
                counts = [0] + counts
            return mask, {"counts": counts, "size": [height, width]}
    return None


def inside_band(area: float) -> str:
    if area <= MIN_AREA + MARGIN:
        return "low" if area < MIN_AREA - MARGIN else "edge"
    if area >= MAX_AREA - MARGIN:
        return "high" if area > MAX_AREA + MARGIN else "edge"
    return "in"


def background(rng, width, height) -> np.ndarray:
    """A textured backdrop: a colour gradient, stripes or tiles, blurred noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    t = (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / (width + height) + 0.5
    img = c0 + (c1 - c0) * t[..., None]
    style = rng.integers(3)
    # In place where the pattern is (adding nothing elsewhere: the same values, in fewer passes).
    if style == 0:  # stripes
        period = rng.uniform(8, 40)
        on = np.sin((x * rng.uniform(-1, 1) + y) / period * np.pi) > 0
        np.add(img, rng.uniform(-40, 40, 3), out=img, where=on[..., None])
    elif style == 1:  # tiles
        tile = int(rng.integers(16, 64))
        on = ((x // tile + y // tile) % 2) == 0
        np.add(img, rng.uniform(-35, 35, 3), out=img, where=on[..., None])
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)).astype(np.float32), (0, 0), rng.uniform(1, 4))
    img += noise
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def distractor(rng, width, height) -> tuple[int, np.ndarray]:
    """Another COCO category: a box, a disc or a triangle somewhere in the photo."""
    cat = int(rng.choice(list(DISTRACTORS)))
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    r = rng.uniform(0.05, 0.18) * min(width, height)
    shape = rng.integers(3)
    if shape == 0:
        poly = np.array(
            [[cx - r, cy - r * 0.7], [cx + r, cy - r * 0.7], [cx + r, cy + r * 0.7], [cx - r, cy + r * 0.7]]
        )
    elif shape == 1:
        poly = ellipse(cx, cy, r, r * rng.uniform(0.5, 1.0), n=16)
    else:
        poly = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    poly[:, 0] = poly[:, 0].clip(0, width)
    poly[:, 1] = poly[:, 1].clip(0, height)
    return cat, np.round(poly, 1)


def colours(rng) -> dict:
    skin = np.array([rng.uniform(90, 240), 0, 0])
    skin[1] = skin[0] * rng.uniform(0.65, 0.85)
    skin[2] = skin[1] * rng.uniform(0.7, 0.9)
    hair = rng.uniform(10, 90) * np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.5, 1.0)])
    if rng.random() < 0.2:
        hair = rng.uniform(150, 230, 3)  # fair or grey
    return {"skin": skin, "hair": hair, "shirt": rng.uniform(0, 255, 3), "trousers": rng.uniform(0, 180, 3)}


def fill(photo, poly, colour, rng) -> None:
    cv2.fillPoly(photo, [np.round(poly).astype(np.int32)], (colour + rng.normal(0, 6, 3)).clip(0, 255).tolist())


def polygon_ann(parts) -> dict:
    return {"segmentation": [p.ravel().tolist() for _, p in parts]}


def make_image(rng, case, width, height):
    """Draws one photo; returns (photo, annotations without ids, expected filter result)."""
    photo = background(rng, width, height)
    anns = []
    for _ in range(int(rng.integers(1, 5))):
        cat, poly = distractor(rng, width, height)
        fill(photo, poly, rng.uniform(0, 255, 3), rng)
        anns.append({"category_id": cat, "iscrowd": 0, "segmentation": [poly.ravel().tolist()]})

    def add_person(parts):
        pal = colours(rng)
        for kind, p in parts:
            fill(photo, p, pal[kind], rng)
        anns.append({"category_id": COCO_PERSON, "iscrowd": 0, **polygon_ann(parts)})

    def add_crowd(target):
        got = crowd_rle(rng, width, height, target)
        if got is None:
            return False
        mask, rle = got
        photo[mask > 0] = (photo[mask > 0] * 0.3 + rng.uniform(40, 200, 3) * 0.7).astype(np.uint8)
        anns.append({"category_id": COCO_PERSON, "iscrowd": 1, "segmentation": rle})
        return True

    if case in AREA_RANGES:
        parts = sized_figure(rng, width, height, rng.uniform(*AREA_RANGES[case]))
        if parts is None:
            return None
        add_person(parts)
        expected = case
    elif case == "several_persons":
        n = int(rng.integers(2, 4))
        for i in range(n):
            parts = sized_figure(rng, width, height, rng.uniform(0.04, 0.5 / n), cx=width * (i + 0.5) / n)
            if parts is None:
                return None
            add_person(parts)
        expected = "several_persons"
    elif case == "crowd_pair":
        if not add_crowd(rng.uniform(0.05, 0.2)):
            return None
        parts = sized_figure(rng, width, height, rng.uniform(0.215, 0.5))
        if parts is None:
            return None
        add_person(parts)
        expected = "several_persons"
    elif case == "crowd_kept":
        if not add_crowd(rng.uniform(0.25, 0.5)):
            return None
        expected = "kept"
    else:
        expected = "no_person"
    photo = cv2.GaussianBlur(photo, (3, 3), 0.6)
    return photo, anns, expected


def finish_ann(ann, width, height) -> dict:
    seg = ann["segmentation"]
    rle = mask_utils.frPyObjects(seg, height, width)
    rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
    ann["area"] = float(mask_utils.area(rle))
    ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
    return ann


def draw_photo(seed: int, source: int, i: int) -> tuple[int, int, bytes, list[dict], str]:
    """Photo ``i`` of ``source`` (0: train2017, 1: val2017): (width, height, JPEG bytes, annotations without ids, expected result)."""
    rng = np.random.default_rng([seed, source, i])
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    while True:
        case = str(rng.choice(list(CASES), p=np.array(list(CASES.values())) / sum(CASES.values())))
        drawn = make_image(rng, case, width, height)
        if drawn is not None:
            break
    photo, image_anns, result = drawn
    anns = [finish_ann(ann, width, height) for ann in image_anns]
    return width, height, images.encode(photo, ".jpg", quality=90), anns, result


def write_sample(out_dir: str | Path, num_train: int = 480, num_val: int = 120, seed: int = 0) -> dict:
    """Writes the sample COCO dataset under ``out_dir``.

    Returns:
        {"train2017": {image_id: expected filter result}, "val2017": {...}}.
    """
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    expected_all = {}
    ann_id = 1
    for s, (source, count) in enumerate((("train2017", num_train), ("val2017", num_val))):
        (out_dir / source).mkdir(exist_ok=True)
        imgs, anns, expected = [], [], {}
        # Each photo has its own generator, so two threads draw them (NumPy and OpenCV release the GIL)
        # and the files are the same as drawn one by one; they are written in order.
        with ThreadPoolExecutor(max_workers=2) as pool:
            drawn = pool.map(functools.partial(draw_photo, seed, s), range(count))
            for i, (width, height, jpeg, image_anns, result) in enumerate(drawn):
                image_id = SOURCES[source] + i
                name = f"{image_id:012d}.jpg"
                images.write_atomic(out_dir / source / name, jpeg)
                imgs.append({"id": image_id, "file_name": name, "width": width, "height": height, "license": 1})
                for ann in image_anns:
                    anns.append({"id": ann_id, "image_id": image_id, **ann})
                    ann_id += 1
                expected[image_id] = result
        dataset = {
            "info": {"description": "background-remover synthetic sample", "version": "1.0", "year": 2026},
            "licenses": [{"id": 1, "name": "CC0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
            "images": imgs,
            "annotations": anns,
            "categories": CATEGORIES,
        }
        images.write_atomic(out_dir / "annotations" / f"instances_{source}.json", json.dumps(dataset).encode())
        expected_all[source] = expected
    return expected_all


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the built-in synthetic COCO-format sample.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--out", default="data-sample/coco", help="folder for annotations/, train2017/, val2017/")
    parser.add_argument("--num-train", type=int, default=480, help="photos in train2017")
    parser.add_argument("--num-val", type=int, default=120, help="photos in val2017")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    args = parser.parse_args(argv)
    if args.num_train < 0 or args.num_val < 0:
        parser.error("--num-train and --num-val must not be negative")
    print(f"sample.py: writing {args.num_train} + {args.num_val} photos to {args.out} (seed {args.seed})")
    expected = write_sample(args.out, args.num_train, args.num_val, args.seed)
    for source, results in expected.items():
        counts = {r: list(results.values()).count(r) for r in sorted(set(results.values()))}
        print(f"  {source}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
