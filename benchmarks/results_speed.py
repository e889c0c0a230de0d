"""Speed of results.py as a user sees it: a folder of full-HD photos, and one photo once the model is loaded.

    python -m benchmarks.results_speed                          # the shipped model (models/person_unet.keras)
    python -m benchmarks.results_speed --model runs/x/best.keras
    python -m benchmarks.results_speed --filter-scale 0.25      # an untrained U-net at 128x128
    python -m benchmarks.results_speed --photos 8 --runs 1      # quicker, noisier

Prints the processor (its class decides the speed: native bfloat16 or AVX2 only), then:
  1. per photo over a folder of 1920x1080 JPEGs (real photos of people, enlarged; --generated), what ``python results.py FOLDER``
     does after loading the model (inference.cut_out_photos with results.py's default
     render: guided-filter alpha, clean-edge colours, RGBA PNG), wall and CPU time, and the
     whole command in a new process (model load and tracing included);
  2. one photo's latency once the model is loaded (read to written PNG);
  3. the pieces one by one (CPU time per photo), and the PNG's size against OpenCV's encoder.
The CPU time per photo is the work done whatever the other processes take: on 2 idle
cores the folder cannot go faster than half of it, which is the budget for a machine of
another class (MODEL.md, docs/results.md). Ends with the goals and whether they are met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import compose
import hardware
import images
import inference
import model as unet
import results

GOAL_FOLDER_MS = {0.25: 80, None: 150}  # per photo over a folder: a quarter-scale 128 U-net; any shipped model
ROOT = Path(__file__).resolve().parents[1]
# Real photos of people (Clothing Co-Parsing test photos, Apache-2.0; tests/data/ccp-test/README.md),
# enlarged to full HD: a person's outline, so the soft edge is as long as in a user's photo.
REAL_PHOTOS = ROOT / "tests" / "data" / "ccp-test" / "images"


def real_photos(folder: Path, n: int, width: int, height: int) -> list[Path]:
    """n full-HD JPEGs (quality 90) made from REAL_PHOTOS, in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [images.read_rgb(p) for p in images.list_images(REAL_PHOTOS)]
    paths = []
    for i in range(n):
        photo = cv2.resize(sources[i % len(sources)], (width, height), interpolation=cv2.INTER_CUBIC)
        path = folder / f"photo{i:03d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of fn(); the CPU time is the whole process's, every thread's."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def alternate(variants: dict, rounds: int, warmup: int = 0) -> dict[str, tuple[float, float]]:
    """{name: (median wall, median CPU) seconds} of each function, after ``warmup`` calls of each.

    The functions run in turn, round after round, the first rotating, so that the noise of a
    shared machine hits them alike.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    found = {name: [] for name in variants}
    for r in range(rounds):
        names = list(variants)[r % len(variants) :] + list(variants)[: r % len(variants)]
        for name in names:
            found[name].append(timed(variants[name]))
    return {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in found.items()}


def write_photos(folder: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """n photo-like JPEGs (quality 90): smooth colour fields, mid-scale texture, a figure, sensor noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        field = cv2.resize(rng.uniform(30, 220, (9, 16, 3)).astype(np.float32), (width, height), cv2.INTER_CUBIC)
        texture = cv2.resize(rng.normal(0, 18, (height // 8, width // 8, 3)).astype(np.float32), (width, height))
        image = field + texture
        centre = (int(rng.integers(width // 3, 2 * width // 3)), height // 2 + height // 5)
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.ellipse(image, centre, (width // 9, height // 3), 0, 0, 360, colour, -1, cv2.LINE_AA)
        cv2.circle(image, (centre[0], centre[1] - height // 2), height // 9, colour, -1, cv2.LINE_AA)
        image += rng.normal(0, 4, image.shape).astype(np.float32)
        path = folder / f"photo{i:03d}.jpg"
        cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def default_render():
    """results.py's render with its default options: an RGBA cutout, guided alpha, clean-edge colours."""
    return results.make_render(results.parse_args(["photo.jpg"]), None)


def folder_speed(predictor, photos: list[Path], out: Path, runs: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per photo of cut_out_photos over the folder, once per run, after a warm-up."""
    render = default_render()
    inference.cut_out_photos(predictor, photos[:1], [out / "warm.png"], render, progress=False)
    found = []
    for run in range(runs):
        outputs = [out / f"{run}-{p.stem}.png" for p in photos]
        wall, cpu = timed(
            lambda outputs=outputs: inference.cut_out_photos(predictor, photos, outputs, render, progress=False)
        )
        found.append((wall / len(photos), cpu / len(photos)))
    return found


def one_photo(predictor, photo: Path, out: Path, rounds: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one photo, read to written PNG, the model loaded and traced."""
    render = default_render()
    times = [
        timed(lambda: inference.cut_out_photos(predictor, [photo], [out], render, progress=False))
        for _ in range(rounds)
    ]
    return statistics.median(w for w, _ in times), statistics.median(c for _, c in times)


def whole_command(model_path: Path, photos_dir: Path, out_dir: Path) -> float:
    """Wall seconds of ``results.py --model M FOLDER`` in a new process (load, trace, every photo)."""
    argv = [sys.executable, str(ROOT / "results.py"), "--model", str(model_path), "--out-dir", str(out_dir)]
    start = time.perf_counter()
    subprocess.run([*argv, str(photos_dir)], check=True, capture_output=True)
    return time.perf_counter() - start


def pieces(predictor, photos: list[Path], rounds: int) -> dict:
    """Median CPU seconds per photo of each step of a cutout, timed alone."""
    size = predictor.image_size
    decoded = [images.read_rgb(p) for p in photos]
    squashed = np.stack([images.squash(photo, size) for photo in decoded])
    probs = predictor(squashed)
    alphas = [compose.guided_alpha(d, p, squashed=s) for d, p, s in zip(decoded, probs, squashed, strict=True)]
    cutouts = [compose.cutout(d, p, squashed=s) for d, p, s in zip(decoded, probs, squashed, strict=True)]
    steps = {
        "read + decode JPEG (images.read_rgb)": lambda: [images.read_rgb(p) for p in photos],
        f"squash to {size} (images.squash)": lambda: [images.squash(d, size) for d in decoded],
        f"forward pass, batch of {len(photos)} (inference.Predictor)": lambda: predictor(squashed),
        "guided-filter alpha (compose.guided_alpha)": lambda: [
            compose.guided_alpha(d, p, squashed=s) for d, p, s in zip(decoded, probs, squashed, strict=True)
        ],
        "clean-edge colours (compose.estimate_foreground)": lambda: [
            compose.estimate_foreground(d, a) for d, a in zip(decoded, alphas, strict=True)
        ],
        "the whole cutout (compose.cutout)": lambda: [
            compose.cutout(d, p, squashed=s) for d, p, s in zip(decoded, probs, squashed, strict=True)
        ],
        "PNG encode (images.encode_png)": lambda: [images.encode(c, ".png") for c in cutouts],
        "PNG encode through OpenCV's encoder instead": lambda: [
            cv2.imencode(".png", cv2.cvtColor(c, cv2.COLOR_RGBA2BGRA)) for c in cutouts
        ],
        "WebP encode instead (--format webp)": lambda: [images.encode(c, ".webp") for c in cutouts],
    }
    medians = {name: cpu / len(photos) for name, (_, cpu) in alternate(steps, rounds).items()}
    sizes = {
        "ours": np.mean([len(images.encode(c, ".png")) for c in cutouts]) / 1e6,
        "opencv": np.mean([len(cv2.imencode(".png", cv2.cvtColor(c, cv2.COLOR_RGBA2BGRA))[1]) for c in cutouts]) / 1e6,
    }
    return medians, sizes


def load(model_path: str | None, filter_scale: float | None, image_size: int | None):
    """The model and its input size: a .keras file, or an untrained U-net of ``filter_scale``."""
    if filter_scale is not None:
        model = unet.build_unet((None, None, 3), filter_scale=filter_scale)
        return model, image_size or images.DEFAULT_SIZE
    model = inference.load_model(model_path)
    return model, inference.model_size(model, image_size, model_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(results.SHIPPED_MODEL), help="a .keras file")
    parser.add_argument(
        "--filter-scale", type=float, default=None, help="an untrained U-net of this filter scale instead"
    )
    parser.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    parser.add_argument("--photos", type=int, default=24, help="photos in the folder")
    parser.add_argument("--runs", type=int, default=3, help="passes over the folder")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the one-photo and piece timings")
    parser.add_argument("--skip-command", action="store_true", help="do not time the whole results.py command")
    parser.add_argument(
        "--generated", action="store_true", help="synthetic photos (a coloured figure) instead of real ones enlarged"
    )
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.results_speed", *(sys.argv[1:] if argv is None else argv)])

    cpu_info = hardware.cpu_info()
    klass = "native bfloat16" if cpu_info.native_bfloat16 else "AVX2 only (no native bfloat16)"
    model, size = load(args.model, args.filter_scale, args.image_size)
    what = f"untrained U-net, filter scale {args.filter_scale}" if args.filter_scale is not None else args.model
    print(f"benchmark: {command}")
    print(f"processor: {cpu_info.describe()}: {klass}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"model: {what}, {model.count_params():,} parameters, input {size}x{size}")
    predictor = inference.Predictor(model, size)
    inference.keep_freed_memory()  # as results.py does

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make = write_photos if args.generated else real_photos
        photos = make(tmp / "photos", args.photos, 1920, 1080)
        kind = "generated" if args.generated else "real (Clothing Co-Parsing, enlarged)"
        (tmp / "out").mkdir()
        runs = folder_speed(predictor, photos, tmp / "out", args.runs)
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        print(
            f"\n1. a folder of {args.photos} {kind} 1920x1080 JPEGs, per photo: "
            + ", ".join(f"{ms(w)} (CPU {ms(c)})" for w, c in runs)
        )
        command_s = None
        if not args.skip_command:
            model_path = tmp / "model.keras" if args.filter_scale is not None else Path(args.model)
            if args.filter_scale is not None:
                model.save(model_path)
            command_s = whole_command(model_path, tmp / "photos", tmp / "command")
            print(
                f"   the whole `results.py --model M FOLDER` command: {command_s:.1f} s (model load and trace included)"
            )
        latency = one_photo(predictor, photos[0], tmp / "one.png", args.rounds)
        print(f"2. one photo once the model is loaded: {ms(latency[0])} (CPU {ms(latency[1])})")
        medians, sizes = pieces(predictor, photos[:8], args.rounds)
    print("3. the pieces, alone, CPU per photo:")
    for name, t in medians.items():
        print(f"   {name:55} {ms(t):>9}")
    print(
        f"   PNG size: ours {sizes['ours']:.2f} MB, OpenCV's {sizes['opencv']:.2f} MB (x{sizes['ours'] / sizes['opencv']:.2f})"
    )

    goal = (
        GOAL_FOLDER_MS[0.25]
        if args.filter_scale == 0.25 or (size == 128 and model.count_params() < 2e6)
        else GOAL_FOLDER_MS[None]
    )
    cores = os.cpu_count() or 1
    print(f"\nGoal: <= {goal} ms per 1920x1080 photo over a folder, on this machine ({klass}):")
    print(
        f"  {ms(wall)} wall, {'met' if wall * 1000 <= goal else 'NOT met'}; CPU {ms(cpu)} per photo, so at best {ms(cpu / cores)} on {cores} idle cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
