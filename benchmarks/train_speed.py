"""Training throughput of the U-net on this machine, and of its input pipeline.

    python -m benchmarks.train_speed                        # every option at filter scale 1.0, three at 0.5 and 0.25
    python -m benchmarks.train_speed --steps 3 --warmup 1 --configs fp32 "bfloat16 + fused BN"
    python -m benchmarks.train_speed --filter-scales 0.25   # one filter scale only
    python -m benchmarks.train_speed --encoder efficientnet_lite0 --image-size 128 192 256 --batch-size 16 \
        --filter-scales 1.0 --configs "fp32 + fused BN" "bfloat16 + fused BN" --pipeline-images 0
    python -m benchmarks.train_speed --augmentation 192 256  # the training pipeline alone, with each augmentation

Prints the processor (model and its AVX2 / AVX-512 / bfloat16 / AMX flags: figures from
machines of different classes are not comparable), images/s for the input pipeline alone
(JPEG folder -> float batches, the first pass and then the cache; --pipeline-images 0 skips
it) and for training steps (128x128, batch 32 by default) under several options, filter
scales (the filter multiplier of model.build) and input sizes, of the original U-net or
the encoder U-net (--encoder; its weights do not change the speed, so they are random),
each in a fresh process, with the ratio to float32 at the same size and filter scale.
Each one's float32 baseline runs first and last: the two figures show how noisy the
machine was. Beside images/s, CPU seconds per image (the process's, all its threads): on
a machine shared with other work, the figure that says what the work costs.

``--augmentation SIZE...`` measures train.py's training pipeline alone instead (cached pairs ->
augmented float batches, ``data.training_batches`` on all cores) at each input size, without
augmentation, with --augment, with today's composites and with --scenes: images/s and the CPU
time per image, which says how much of the cores the pipeline takes from a training step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

import data
import hardware
import model as unet

ROOT = Path(__file__).resolve().parents[1]  # the benchmark's child processes run from here, as it does

# name -> (train.py-style options, environment)
CONFIGS = {
    "fp32": ({}, {}),
    "fp32 + XLA": ({"jit_compile": True}, {}),
    "fp32 + fused BN": ({"fused_batchnorm": True}, {}),
    "bfloat16": ({"mixed_precision": True}, {}),
    "bfloat16 + XLA": ({"mixed_precision": True, "jit_compile": True}, {}),
    "bfloat16 + fused BN": ({"mixed_precision": True, "fused_batchnorm": True}, {}),
    "bfloat16 + fused BN, 1 inter-op thread": ({"mixed_precision": True, "fused_batchnorm": True, "inter_op": 1}, {}),
}
# The options measured at filter scales below 1.0 (the others are measured at 1.0 only).
NARROW_CONFIGS = ("fp32", "fp32 + fused BN", "bfloat16 + fused BN")


def measure_training(
    options: dict, image_size: int, batch_size: int, steps: int, warmup: int, filter_scale: float, encoder: str = "none"
) -> dict:
    """Images/s and CPU seconds per image of model.fit steps on random data already in memory (no input cost)."""
    if options.get("inter_op"):  # before the runtime starts: this process has run no operation yet
        tf.config.threading.set_inter_op_parallelism_threads(options["inter_op"])
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if options.get("mixed_precision") else "float32")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, image_size, image_size, 3), dtype=np.float32)
    y = (rng.random((batch_size, image_size, image_size, 1)) > 0.5).astype(np.float32)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model = unet.compile_unet(
        unet.build((None, None, 3), encoder, filter_scale=filter_scale), jit_compile=options.get("jit_compile", False)
    )
    if options.get("fused_batchnorm"):
        unet.use_fused_batchnorm(model)

    times, cpu = [], []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())
            cpu.append(time.process_time())

    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    seconds, cpu_seconds = times[-1] - times[warmup - 1], cpu[-1] - cpu[warmup - 1]
    return {
        "images_per_s": steps * batch_size / seconds,
        "s_per_step": seconds / steps,
        "cpu_s_per_image": cpu_seconds / (steps * batch_size),
    }


def write_jpeg_split(root: Path, n: int, size: int) -> Path:
    """n random photo-like JPEGs (640x480) with masks: the input pipeline's worst case."""
    rng = np.random.default_rng(0)
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 255, (size // 16, size // 16, 3), dtype=np.uint8)
        image = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "masks" / f"{i:05d}.png"), ((image[..., 0] > 128) * 255).astype(np.uint8))
    return root


def measure_pipeline(split: Path, image_size: int, batch_size: int, batches: int) -> dict:
    """Images/s of data.py's pipeline: the first (decoding) pass, then cached passes."""
    start = time.perf_counter()
    pairs = data.load_split(split, image_size)  # decodes and caches every pair
    first = time.perf_counter() - start
    count = int(pairs.cardinality())
    ds = data.batches(pairs, batch_size, shuffle=True, seed=1, repeat=True)
    iterator = iter(ds)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    cached = time.perf_counter() - start
    return {"first_pass_images_per_s": count / first, "images_per_s": batches * batch_size / cached, "images": count}


# name -> data.training_batches options (train.py's: --augment, --composite SHARE, --scenes); cutouts in all composites
PIPELINES = {
    "no augmentation": {},
    "--augment": {"augmented": True},
    "--augment --composite 0.5": {"augmented": True, "composite_rate": 0.5},
    "--augment --composite 0.5 --scenes": {"augmented": True, "composite_rate": 0.5, "scenes": True},
    "--augment --composite 1 --scenes": {"augmented": True, "composite_rate": 1.0, "scenes": True},
}


def synthetic_pairs(n: int, size: int, seed: int, people: bool = True) -> tf.data.Dataset:
    """n cached uint8 (photo, mask) pairs of textured photos with a person-sized ellipse each (or photos alone)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (n, size // 8, size // 8, 3), dtype=np.uint8)
    photos = np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_CUBIC) for s in small])
    if not people:
        return tf.data.Dataset.from_tensor_slices(photos).cache()
    yy, xx = np.mgrid[:size, :size] / size
    masks = np.stack(
        [((yy - 0.3 - 0.4 * a) ** 2 / 0.16 + (xx - 0.2 - 0.6 * b) ** 2 / 0.02 < 1) for a, b in rng.random((n, 2))]
    )[..., None].astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices((photos, masks)).cache()


def measure_augmentation(name: str, image_size: int, batch_size: int, batches: int) -> dict:
    """Images/s and CPU ms per image of data.training_batches with PIPELINES[name], over cached synthetic pairs."""
    options = PIPELINES[name]
    sources = [synthetic_pairs(128, image_size, 0), synthetic_pairs(128, image_size, 1)]
    extras = {}
    if options.get("composite_rate"):
        extras = {"backgrounds": synthetic_pairs(64, image_size, 2, people=False)}
        extras["cutouts"] = synthetic_pairs(32, image_size, 3)
    stream = data.training_batches(sources, batch_size, seed=1, **options, **extras)
    iterator = iter(stream)
    for _ in range(3):  # tracing, caches filled, autotuning settled
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    images = batches * batch_size
    return {"images_per_s": images / seconds, "cpu_ms_per_image": 1000 * cpu / images}


def augmentation_table(args) -> None:
    """--augmentation: each pipeline at each size in a fresh process; one markdown table."""
    cpu = hardware.cpu_info()
    print(f"processor: {cpu.describe()}, {os.cpu_count()} cores; native bfloat16: {cpu.native_bfloat16}")
    print(f"benchmark: train.py's training pipeline alone, batch {args.batch_size}, {args.batches} batches each")
    rows = []
    for size in args.augmentation:
        for name in PIPELINES:
            code = (
                "import json, benchmarks.train_speed as b; "
                f"print(json.dumps(b.measure_augmentation({name!r}, {size}, {args.batch_size}, {args.batches})))"
            )
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )  # fmt: skip
            if done.returncode:
                result = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
            else:
                result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((size, name, result))
            shown = result.get("error") or f"{result['images_per_s']:.0f} images/s"
            print(f"  measured {size}px {name}: {shown}", flush=True)
    print(f"\n{cpu.describe()}, {os.cpu_count()} cores\n")
    print("| input | pipeline | images/s (all cores) | CPU ms per image | cores taken at 15 images/s of training |")
    print("|---|---|---|---|---|")
    for size, name, r in rows:
        if "error" in r:
            print(f"| {size} | {name} | failed: {r['error'][:60]} | | |")
        else:
            share = 15 * r["cpu_ms_per_image"] / 1000
            print(f"| {size} | {name} | {r['images_per_s']:.0f} | {r['cpu_ms_per_image']:.1f} | {share:.2f} |")


def run_child(name: str, filter_scale: float, image_size: int, args) -> dict:
    options, env = CONFIGS[name]
    cmd = [sys.executable, "-m", "benchmarks.train_speed", "--child", name, "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup), "--encoder", args.encoder]
    cmd += ["--filter-scales", str(filter_scale)]
    cmd += ["--image-size", str(image_size), "--batch-size", str(args.batch_size)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, nargs="+", default=[128], help="input sizes, each measured")
    parser.add_argument("--encoder", default="none", choices=unet.ENCODERS, help="the U-net: as train.py --encoder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="measured training steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="steps before measuring (tracing, XLA compiling)")
    parser.add_argument("--configs", nargs="*", default=None, help=f"any of: {', '.join(CONFIGS)}")
    parser.add_argument(
        "--filter-scales",
        nargs="*",
        type=float,
        default=[1.0, 0.5, 0.25],
        help="filter multipliers (model.build's filter_scale)",
    )
    parser.add_argument(
        "--pipeline-images", type=int, default=512, help="JPEGs in the input-pipeline test (at the first size); 0: none"
    )
    parser.add_argument(
        "--augmentation",
        nargs="+",
        type=int,
        metavar="SIZE",
        help="measure the training pipeline alone with each augmentation at these input sizes instead",
    )
    parser.add_argument("--batches", type=int, default=30, help="measured batches per pipeline with --augmentation")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.augmentation:
        augmentation_table(args)
        return

    if args.child:
        options = CONFIGS[args.child][0]
        result = measure_training(
            options, args.image_size[0], args.batch_size, args.steps, args.warmup, args.filter_scales[0], args.encoder
        )
        print(json.dumps(result))
        return

    cpu = hardware.cpu_info()
    print(f"processor: {cpu.describe()}, {os.cpu_count()} cores; native bfloat16: {cpu.native_bfloat16}")
    what = "the original U-net" if args.encoder == "none" else f"the U-net on {args.encoder}"
    sizes = ", ".join(f"{size}x{size}" for size in args.image_size)
    print(f"benchmark: {what}, {sizes}, batch {args.batch_size}; machine load now {os.getloadavg()[0]:.1f}")
    pipe = measure_pipeline_child(args) if args.pipeline_images else None
    if pipe:
        print(
            f"input pipeline: {pipe['first_pass_images_per_s']:.0f} images/s on the first pass "
            f"(decoding {pipe['images']} 640x480 JPEGs), {pipe['images_per_s']:.0f} images/s from the cache"
        )

    rows = []
    for size in args.image_size:
        for scale in args.filter_scales:
            configs = args.configs or (list(CONFIGS) if scale == 1.0 else list(NARROW_CONFIGS))
            order = ["fp32", *[n for n in configs if n != "fp32"], "fp32"]
            for name in order:
                result = run_child(name, scale, size, args)
                rows.append((size, scale, name, result))
                shown = (
                    f"{result['images_per_s']:.2f} images/s, {result['cpu_s_per_image']:.3f} CPU s/image"
                    if "error" not in result
                    else result["error"]
                )
                print(f"  measured {size}x{size} filter scale {scale} {name}: {shown}", flush=True)
    print(f"\n{cpu.describe()}; {what}, batch {args.batch_size}\n")
    print("| input | filter scale | training option | images/s | CPU s per image | x fp32 (same size, filter scale) |")
    print("|---|---|---|---|---|---|")
    for size, scale, name, result in rows:
        base = [r["images_per_s"] for z, s, n, r in rows if (z, s, n) == (size, scale, "fp32") and "error" not in r]
        if "error" in result:
            print(f"| {size} | {scale} | {name} | failed: {result['error'][:60]} | | |")
        else:
            ratio = f"{result['images_per_s'] / (sum(base) / len(base)):.2f}" if base else ""
            print(
                f"| {size} | {scale} | {name} | {result['images_per_s']:.2f} | {result['cpu_s_per_image']:.3f} | {ratio} |"
            )
    full = [
        r["images_per_s"] for z, s, n, r in rows if (z, s, n) == (args.image_size[0], 1.0, "fp32") and "error" not in r
    ]
    if full and pipe:
        baseline = sum(full) / len(full)
        print(
            f"\ninput pipeline / fp32 training at filter scale 1.0: {pipe['images_per_s'] / baseline:.0f}x (cached), "
            f"{pipe['first_pass_images_per_s'] / baseline:.0f}x (first pass)"
        )


def measure_pipeline_child(args) -> dict:
    """measure_pipeline in a fresh process, at the first --image-size."""
    size = args.image_size[0]
    with tempfile.TemporaryDirectory() as tmp:
        split = write_jpeg_split(Path(tmp) / "split", args.pipeline_images, size)
        return json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; sys.argv = ['x']; "
                    "import json, benchmarks.train_speed as b; from pathlib import Path; "
                    f"print(json.dumps(b.measure_pipeline(Path({str(split)!r}), {size}, {args.batch_size}, 200)))",
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            .stdout.strip()
            .splitlines()[-1]
        )


if __name__ == "__main__":
    main()
