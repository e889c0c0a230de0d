"""Speed of results.py on this machine: cutting people out of full-HD photos, and the forward pass.

    python -m benchmarks.results_speed                       # untrained faithful U-net, ~2 minutes on 2 cores
    python -m benchmarks.results_speed --model runs/demo/best.keras
    python -m benchmarks.results_speed --filter-scale 0.25   # untrained U-net with 1/4 of the filters
    python -m benchmarks.results_speed --photos 8 --calls 10 # quicker, noisier

Prints, for the model at 128x128:
  1. end-to-end seconds per photo of ``inference.cut_out_photos`` (what ``python results.py
     --model M FOLDER`` does per photo: read, squash, predict, upsample, clean the edges,
     compose, encode and write the PNG) on a folder of generated 1920x1080 JPEGs, after the
     one-off model load and trace (wall and CPU time); then the same pieces timed one by one
     with results.py's own functions (and WebP encoding instead of PNG), the cutout's size
     per --format, and candidates for the costly pieces (composing the RGBA, PNG settings);
  2. single-photo latency of the forward pass: model.predict (the original's way), an eager
     call, inference.Predictor, Predictor with the fused BatchNorm kernel, and bfloat16;
  3. forward-pass throughput of these Predictors for batches of 8 and 32.
Variants that are compared run alternately, round after round, so that the noise of a
shared machine hits them alike; the ratios are the figures to trust. Ends with a markdown
table for the README and whether the goals are met.
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

GOAL_END_TO_END_MS = 150  # per 1920x1080 photo, read to written PNG
GOAL_FORWARD_SPEEDUP = 1.5  # single-photo forward pass, x model.predict

PREDICT = "(a) model.predict (original)"
PREDICTOR = "(c) inference.Predictor (tf.function)"
FUSED = "(d) Predictor + fused BatchNorm"
BF16 = "(e) Predictor, bfloat16"
FORWARD = "forward pass, batch 8 (Predictor)"
ALPHA_MAP = "  of which upsampling alpha (compose.alpha_map)"
REFINE = "  of which clean edges (compose.estimate_foreground)"
WEBP = "WebP encode instead (images.encode, --format webp)"
INSIDE_OR_INSTEAD = (ALPHA_MAP, REFINE, WEBP)  # pieces that the sum leaves out: part of another, or an alternative

# PNG encoder settings compared with results.py's (images.encode: OpenCV's defaults, which
# are zlib level 1 with the RLE strategy and the SUB filter, "tuned for speed"). Naming a
# compression level switches OpenCV to zlib's default strategy: slower even at level 1.
PNG_DEFAULT = "results.py (OpenCV default)"
PNG_OPTIONS = {
    PNG_DEFAULT: [],
    "Huffman only": ["IMWRITE_PNG_STRATEGY", "IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY"],
    "IMWRITE_PNG_COMPRESSION 1": ["IMWRITE_PNG_COMPRESSION", 1],
    "IMWRITE_PNG_COMPRESSION 3": ["IMWRITE_PNG_COMPRESSION", 3],
    "IMWRITE_PNG_COMPRESSION 0 (stored)": ["IMWRITE_PNG_COMPRESSION", 0],
}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of fn(); the CPU time is the whole process's, all threads."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def alternate(variants: dict, rounds: int, warmup: int = 2, cpu: bool = False) -> dict:
    """Median wall seconds per call of each variant (with ``cpu``: (wall, CPU) medians).

    The variants are called in turn round after round, the starting one rotating, so that
    the noise of a shared machine hits them alike.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    names, times = list(variants), {name: [] for name in variants}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(variants[name]))
    walls = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    if not cpu:
        return walls
    return {name: (walls[name], statistics.median(c for _, c in t)) for name, t in times.items()}


def write_photos(folder: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """n photo-like JPEGs (quality 90): smooth colour fields, mid-scale texture, a figure, sensor noise."""
    import cv2
    import numpy as np

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


def make_predictors(model_path: str | None, image_size: int, filter_scale: float = 1.0) -> tuple:
    """The float32 model and inference.Predictors of it, of a copy with fused BatchNorm and of a bfloat16 copy.

    Returns:
        (model, {variant name: Predictor}, fused layer count, why there is no bfloat16 copy or None).
    """
    import keras

    import inference
    import model as unet

    def build():
        if model_path:
            return inference.load_model(model_path)
        return unet.build_unet((None, None, 3), filter_scale=filter_scale)

    model = build()
    fused = build()
    fused.set_weights(model.get_weights())
    switched = unet.use_fused_batchnorm(fused)
    predictors = {PREDICTOR: inference.Predictor(model, image_size), FUSED: inference.Predictor(fused, image_size)}
    problem = None
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        bf16 = unet.build_unet(tuple(model.inputs[0].shape[1:]), filter_scale=filter_scale)
        bf16.set_weights(model.get_weights())  # a --model of another architecture fails here
        predictors[BF16] = inference.Predictor(bf16, image_size)
    except (ValueError, TypeError) as e:
        problem = f"no bfloat16 copy of this model ({str(e).splitlines()[0][:80]})"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, predictors, switched, problem


def end_to_end(predictor, photos: list[Path], out_dir: Path, runs: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per photo of inference.cut_out_photos over the folder, once per run.

    The CPU time is the whole process's, every thread's: the work done, whatever share of
    the cores the other processes leave us.
    """
    import numpy as np

    import compose
    import inference

    batch = 8  # results.py's --batch-size default
    for n in {min(batch, len(photos)), len(photos) % batch} - {0}:  # trace every batch shape first
        predictor(np.zeros((n, predictor.image_size, predictor.image_size, 3), np.uint8))
    outputs = [out_dir / f"{i:04d}-{p.stem}.png" for i, p in enumerate(photos)]
    out_dir.mkdir(parents=True, exist_ok=True)
    per_photo = []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        rows, failures = inference.cut_out_photos(
            predictor, photos, outputs, compose.cutout, batch_size=batch, progress=False
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        per_photo.append((wall / len(photos), cpu / len(photos)))
        assert len(rows) == len(photos) and not failures, failures
    return per_photo


def whole_command(model_path: Path, photos_dir: Path, out_dir: Path) -> float:
    """Wall seconds of the results.py command on the folder (a new process): load, trace, every photo, the figure."""

    argv = ["--model", str(model_path), "--out-dir", str(out_dir), "--figure", str(out_dir / "results.png")]
    start = time.perf_counter()
    script = Path(__file__).resolve().parents[1] / "results.py"
    subprocess.run(
        [sys.executable, str(script), *argv, "--overwrite", str(photos_dir)], check=True, capture_output=True
    )
    return time.perf_counter() - start


def pieces(predictor, photos: list[Path], out_dir: Path, rounds: int) -> dict:
    """Median (wall, CPU) seconds per photo of each step of cut_out_photos, timed alone on a few photos."""
    import numpy as np

    import compose
    import images

    size = predictor.image_size
    out_dir.mkdir(parents=True, exist_ok=True)
    decoded = [images.read_rgb(p) for p in photos]
    squashed = np.stack([images.squash(photo, size) for photo in decoded])
    batch = np.resize(squashed, (8, size, size, 3))  # results.py predicts in batches of 8
    probs = predictor(squashed)
    cutouts = [compose.cutout(photo, prob) for photo, prob in zip(decoded, probs, strict=True)]
    alphas = [compose.alpha_map(p, *d.shape[:2]) for d, p in zip(decoded, probs, strict=True)]
    encoded = [images.encode(c, ".png") for c in cutouts]
    k = len(photos)

    def each(fn, items):
        return lambda: [fn(*item) for item in items]

    steps = {
        "read + decode JPEG (images.read_rgb)": each(images.read_rgb, [(p,) for p in photos]),
        f"squash to {size} (images.squash)": each(images.squash, [(d, size) for d in decoded]),
        FORWARD: lambda: [predictor(batch) for _ in range(k)],
        "upsample + compose RGBA (compose.cutout)": each(compose.cutout, list(zip(decoded, probs, strict=True))),
        ALPHA_MAP: each(compose.alpha_map, [(p, *d.shape[:2]) for d, p in zip(decoded, probs, strict=True)]),
        REFINE: each(compose.estimate_foreground, list(zip(decoded, alphas, strict=True))),
        "thumbnail for the figure": each(images.thumbnail, [(d,) for d in decoded]),
        "PNG encode (images.encode)": each(images.encode, [(c, ".png") for c in cutouts]),
        WEBP: each(images.encode, [(c, ".webp") for c in cutouts]),
        "write file (images.write_atomic)": each(
            images.write_atomic, [(out_dir / f"piece{i}.png", e) for i, e in enumerate(encoded)]
        ),
    }
    medians = alternate(steps, rounds, warmup=1, cpu=True)
    per_photo = {name: (wall / k, cpu / k) for name, (wall, cpu) in medians.items()}
    per_photo[FORWARD] = tuple(t / 8 for t in per_photo[FORWARD])
    return per_photo


def person_prob(size: int):
    """A (size, size) probability map shaped like a trained model's: a figure with soft edges."""
    import cv2
    import numpy as np

    prob = np.zeros((size, size), np.float32)
    cv2.ellipse(prob, (size // 2, 2 * size // 3), (size // 6, size // 3), 0, 0, 360, 1.0, -1)
    cv2.circle(prob, (size // 2, size // 4), size // 9, 1.0, -1)
    return cv2.GaussianBlur(prob, (0, 0), 1.5)


def fast_cutout(photo, prob):
    """A candidate for compose.cutout (transparent background): the same RGBA, up to 1 in alpha.

    cv2 does the scaling to uint8 and the channel interleaving that NumPy does in several
    full-size passes (clip, multiply, astype, dstack).
    """
    import cv2

    height, width = photo.shape[:2]
    alpha = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    rgba = cv2.cvtColor(photo, cv2.COLOR_RGB2RGBA)
    rgba[..., 3] = cv2.convertScaleAbs(alpha, alpha=255.0)  # rounds and saturates, like clip(255 p + 0.5)
    return rgba


def compose_options(photos: list[Path], rounds: int) -> tuple[dict, int]:
    """Median seconds per photo of compose.cutout (without clean edges) and of fast_cutout, and their largest difference."""
    import numpy as np

    import compose
    import images

    decoded = [images.read_rgb(p) for p in photos]
    prob = person_prob(128)
    variants = {
        "compose.cutout": lambda: [compose.cutout(d, prob, refine=False) for d in decoded],
        "candidate: cv2.cvtColor + convertScaleAbs": lambda: [fast_cutout(d, prob) for d in decoded],
    }
    difference = max(
        int(np.abs(compose.cutout(d, prob, refine=False).astype(int) - fast_cutout(d, prob)).max()) for d in decoded
    )
    medians = alternate(variants, rounds, warmup=1)
    return {name: t / len(decoded) for name, t in medians.items()}, difference


def png_options(photos: list[Path], rounds: int) -> dict:
    """Median seconds and MB per full-size RGBA cutout for each PNG encoder setting."""
    import cv2

    import compose
    import images

    prob = person_prob(128)
    bgra = [cv2.cvtColor(compose.cutout(images.read_rgb(p), prob), cv2.COLOR_RGBA2BGRA) for p in photos]
    params = {
        name: [getattr(cv2, v) if isinstance(v, str) else v for v in option] for name, option in PNG_OPTIONS.items()
    }
    variants = {name: (lambda p=p: [cv2.imencode(".png", b, p) for b in bgra]) for name, p in params.items()}
    medians = alternate(variants, rounds, warmup=1)
    sizes = {
        name: sum(cv2.imencode(".png", b, p)[1].size for b in bgra) / len(bgra) / 1e6 for name, p in params.items()
    }
    return {name: (medians[name] / len(bgra), sizes[name]) for name in variants}


def cutout_formats(photos: list[Path], rounds: int) -> dict:
    """Median (wall, CPU) seconds to encode, and MB, per full-size RGBA cutout for each --format.

    The cutouts have a person-shaped soft alpha and clean edges (an untrained model's
    alpha is soft everywhere, which WebP, dropping the colour under fully transparent
    pixels, would encode slower and larger than a real cutout).
    """
    import compose
    import images

    prob = person_prob(128)
    cutouts = [compose.cutout(images.read_rgb(p), prob) for p in photos]
    formats = (".png", ".webp")
    variants = {ext: (lambda ext=ext: [images.encode(c, ext) for c in cutouts]) for ext in formats}
    medians = alternate(variants, rounds, warmup=1, cpu=True)
    sizes = {ext: sum(len(images.encode(c, ext)) for c in cutouts) / len(cutouts) / 1e6 for ext in formats}
    return {ext: (medians[ext][0] / len(cutouts), medians[ext][1] / len(cutouts), sizes[ext]) for ext in formats}


def forward_latency(model, predictors: dict, image_size: int, rounds: int) -> tuple[dict, dict]:
    """Median seconds of one 1-photo forward pass per variant, and their largest differences."""
    import numpy as np

    x = np.random.default_rng(2).random((1, image_size, image_size, 3), dtype=np.float32)
    variants = {
        PREDICT: lambda: model.predict(x, verbose=0),
        "(b) model(x, training=False), eager": lambda: model(x, training=False).numpy(),
    }
    reference = predictors[PREDICTOR](x)
    differences = {}
    for name, predictor in predictors.items():
        variants[name] = lambda predictor=predictor: predictor(x)
        if name != PREDICTOR:
            differences[name] = np.abs(predictor(x) - reference).max()
    return alternate(variants, rounds, warmup=3), differences


def throughput(predictors: dict, image_size: int, batch_sizes: list[int], rounds: int) -> dict:
    """Images/s of each predictor per batch size, alternated."""
    import numpy as np

    rng = np.random.default_rng(3)
    found = {}
    for batch_size in batch_sizes:
        x = rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)  # photos arrive as uint8
        variants = {name: (lambda p=p, x=x: p(x)) for name, p in predictors.items()}
        medians = alternate(variants, rounds, warmup=1)
        found[batch_size] = {name: batch_size / t for name, t in medians.items()}
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a .keras file (default: an untrained faithful U-net)")
    parser.add_argument("--image-size", type=int, default=128, help="model input size")
    parser.add_argument(
        "--filter-scale", type=float, default=1.0, help="without --model: the untrained U-net's filter multiplier"
    )
    parser.add_argument("--photos", type=int, default=24, help="photos in the end-to-end folder")
    parser.add_argument("--width", type=int, default=1920, help="the generated photos' width in pixels")
    parser.add_argument("--height", type=int, default=1080, help="the generated photos' height in pixels")
    parser.add_argument("--runs", type=int, default=3, help="end-to-end passes over the folder")
    parser.add_argument("--piece-photos", type=int, default=4, help="photos whose pieces are timed one by one")
    parser.add_argument("--piece-rounds", type=int, default=7, help="rounds of the piece and PNG timings")
    parser.add_argument("--calls", type=int, default=30, help="single-photo forward passes per variant")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--batch-rounds", type=int, default=5, help="batched forward passes per variant and size")
    parser.add_argument("--skip-command", action="store_true", help="do not time the whole results.py command")
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.results_speed", *(sys.argv[1:] if argv is None else argv)])

    load = os.getloadavg()[0]
    print(f"benchmark: {command}")
    print(
        f"U-net at {args.image_size}x{args.image_size} ({args.model or f'untrained, model.build_unet(filter_scale={args.filter_scale})'}), "
        f"{os.cpu_count()} CPU cores, load average {load:.1f} at the start"
    )
    model, predictors, switched, problem = make_predictors(args.model, args.image_size, args.filter_scale)
    print(f"{model.count_params():,} parameters; fused BatchNorm in {switched} layers")
    size = f"{args.width}x{args.height}"

    # 1. End to end, and where the time goes.
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp / "photos", args.photos, args.width, args.height)
        jpeg_kb = sum(p.stat().st_size for p in photos) / len(photos) / 1e3
        print(f"\n1. end to end: {args.photos} generated {size} JPEGs (quality 90, {jpeg_kb:.0f} kB each)")
        e2e = end_to_end(predictors[PREDICTOR], photos, tmp / "cutouts", args.runs)
        wall, cpu = statistics.median(w for w, _ in e2e), statistics.median(c for _, c in e2e)
        print(
            "   inference.cut_out_photos, per photo: "
            + ", ".join(f"{ms(w)} (CPU {ms(c)})" for w, c in e2e)
            + f"; median {ms(wall)} (CPU {ms(cpu)})"
        )
        png_mb = sum(p.stat().st_size for p in (tmp / "cutouts").glob("*.png")) / args.photos / 1e6
        command_s = None
        if not args.skip_command:
            model_path = Path(args.model) if args.model else tmp / "untrained.keras"
            if not args.model:
                model.save(model_path)
            command_s = whole_command(model_path, tmp / "photos", tmp / "command")
            print(
                f"   results.py, the whole command (load, trace, {args.photos} photos, figure): {command_s:.1f} s; "
                f"{command_s - wall * args.photos:.1f} s more than the photos alone"
            )
        few = photos[: args.piece_photos]
        split = pieces(predictors[PREDICTOR], few, tmp / "pieces", args.piece_rounds)
        print(f"   the pieces, alone, per photo (median of {args.piece_rounds} rounds on {len(few)} photos): wall, CPU")
        for name, (w, c) in split.items():
            print(f"     {name:48} {ms(w):>9} {ms(c):>9}")
        serial = [sum(t[i] for name, t in split.items() if name not in INSIDE_OR_INSTEAD) for i in (0, 1)]
        print(f"     {'sum':48} {ms(serial[0]):>9} {ms(serial[1]):>9}")
        formats = cutout_formats(few, args.piece_rounds)
        print(f"   --format for a {size} RGBA cutout with a person-shaped alpha: encoding wall, CPU, size")
        for ext, (w, c, mb) in formats.items():
            print(f"     {ext[1:]:48} {ms(w):>9} {ms(c):>9}  {mb:.2f} MB")
        compose, difference = compose_options(few, args.piece_rounds)
        print(f"   composing the RGBA cutout without clean edges (max difference {difference}):")
        base = compose["compose.cutout"]
        for name, t in compose.items():
            print(f"     {name:48} {ms(t):>9}  x{base / t:.2f} speed")
        png = png_options(few, args.piece_rounds)
        print(f"   PNG encoder settings for a {size} RGBA cutout:")
        base = png[PNG_DEFAULT][0]
        for name, (t, mb) in png.items():
            print(f"     {name:48} {ms(t):>9}  {mb:.2f} MB  x{base / t:.2f} speed")

    # 2. One photo's forward pass.
    print(f"\n2. single-photo forward pass, median of {args.calls} calls, variants alternated:")
    latency, differences = forward_latency(model, predictors, args.image_size, args.calls)
    base = latency[PREDICT]
    for name, t in latency.items():
        note = f", max |p - Predictor's p| {differences[name]:.1e}" if name in differences else ""
        print(f"   {name:40} {ms(t):>9}  x{base / t:.2f}{note}")
    if problem:
        print(f"   {BF16}: skipped, {problem}")

    # 3. Batches.
    print(f"\n3. batched forward pass (uint8 photos), median of {args.batch_rounds} batches, variants alternated:")
    batched = throughput(predictors, args.image_size, args.batch_sizes, args.batch_rounds)
    for batch_size, found in batched.items():
        plain = found[PREDICTOR]
        print(
            f"   batch {batch_size}: "
            + ", ".join(f"{n[4:]} {v:.1f} images/s (x{v / plain:.2f})" for n, v in found.items())
        )

    speedup = base / latency[PREDICTOR]
    print(f"\nCommand: `{command}` ({os.cpu_count()} CPU cores, load average {load:.1f} at the start)\n")
    print(
        f"| results.py, U-net {args.image_size}x{args.image_size} | time | x model.predict (1 photo) |\n|---|---|---|"
    )
    print(f"| end to end, per {size} photo (read, predict, cut out, write PNG) | {ms(wall)} (CPU {ms(cpu)}) | |")
    if command_s is not None:
        print(
            f"| whole `results.py` command on {args.photos} photos (+ model load, trace, figure) | {command_s:.1f} s | |"
        )
    for name, (w, c) in split.items():
        print(f"| — {name.strip()}, alone | {ms(w)} (CPU {ms(c)}) | |")
    print(f"| — PNG cutout size | {png_mb:.1f} MB | |")
    for ext, (w, c, mb) in formats.items():
        print(
            f"| cutout with a person-shaped alpha as {ext[1:]}: encoding, size | {ms(w)} (CPU {ms(c)}), {mb:.2f} MB | |"
        )
    for name, t in latency.items():
        print(f"| forward pass, 1 photo: {name[4:]} | {ms(t)} | {base / t:.2f} |")
    for batch_size, found in batched.items():
        v = found[PREDICTOR]
        print(
            f"| forward pass, batch {batch_size}: Predictor | {v:.1f} images/s ({ms(1 / v)}/photo) | {v * base:.2f} |"
        )

    print("\nGoals:")
    met = "met" if wall * 1000 <= GOAL_END_TO_END_MS else "NOT met"
    print(f"  end to end <= {GOAL_END_TO_END_MS} ms per {size} photo: {ms(wall)}, {met}", end="")
    print(f" (CPU {ms(cpu)} per photo: at best {ms(cpu / os.cpu_count())} on {os.cpu_count()} idle cores)")
    met = "met" if speedup >= GOAL_FORWARD_SPEEDUP else "NOT met"
    print(f"  single-photo forward pass >= {GOAL_FORWARD_SPEEDUP}x faster than model.predict: x{speedup:.2f}, {met}")


if __name__ == "__main__":
    main()
