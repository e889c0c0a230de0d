"""Speed and size of the exported models (export.py) against the Keras path of results.py.

    python -m benchmarks.export_speed                         # models/person_unet.keras, else an untrained U-net
    python -m benchmarks.export_speed --model runs/demo/best.keras
    python -m benchmarks.export_speed --filter-scales 1.0 0.25 --rounds 5   # untrained U-nets, these filter scales

Prints the processor (model, AVX-512 / bfloat16 / AMX flags) and core count first: figures
from machines of different classes are not comparable. Then, for each model, exports every
format that can be written here (serving.export, into a temporary folder) and times one
photo, uint8 RGB in -> uint8 alpha out, at 1920x1080 and at the model's input size:

  Keras        what results.py does: images.squash, inference.Predictor, compose.alpha_map
  SavedModel   tf.saved_model.load(...).signatures["serving_default"]
  LiteRT       ai_edge_litert's Interpreter (signature runner), one thread per core
  ONNX Runtime onnxruntime.InferenceSession on the CPU

(serving.load_exported runs each one). The runtimes run in turn, round after round, so
that the noise of a shared machine hits them alike; the figures are medians of the wall
time and of the process's CPU time (all threads: the work done, whatever share of the cores
other processes leave). Ends with a markdown table: file size, the two latencies, and the
largest alpha difference from the Keras path over the two photos and serving.CHECK_SIZES.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import hardware
import images
import inference
import model as unet
import serving
from benchmarks.results_speed import alternate

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_MODEL = ROOT / "models" / "person_unet.keras"
NAMES = {"keras": "Keras (results.py)", "saved_model": "SavedModel", "litert": "LiteRT", "onnx": "ONNX Runtime"}
FILES = {"saved_model": "person_saved_model", "litert": "person.tflite", "onnx": "person.onnx"}
FULL_HD = (1080, 1920)


def models_to_measure(args: argparse.Namespace, tmp: Path) -> list[tuple[str, Path]]:
    """(label, .keras file) per model: --filter-scales builds untrained ones, saved in ``tmp``.

    An untrained U-net gets its BatchNorm statistics from generated photos, so that its
    probabilities spread over (0, 1) and the alpha differences mean something.
    """
    if args.model and not args.filter_scales:
        return [(args.model, Path(args.model))]
    photos = np.stack([images.squash(serving.sample_photo(200 + 40 * i, 300, seed=i), 128) for i in range(4)])
    found = []
    for scale in args.filter_scales or [0.25]:
        keras.utils.set_random_seed(0)
        net = unet.build_unet((None, None, 3), filter_scale=scale)
        unet.recalibrate_batchnorm(net, [photos.astype(np.float32) / 255.0])
        path = tmp / f"untrained_filter_scale{scale}.keras"
        net.save(path)
        found.append((f"untrained U-net, filter scale {scale}", path))
    return found


def runners(model_path: Path, out: Path) -> tuple[dict, dict, int, str]:
    """{name: photo -> alpha} for Keras and each exportable format, {name: MB}, input size, skipped formats."""
    model = inference.load_model(model_path)
    size = inference.model_size(model)
    predictor = inference.Predictor(model, size)
    found = {"keras": lambda photo: serving.keras_alpha(predictor, photo)}
    sizes = {"keras": model_path.stat().st_size / 1e6}
    skipped = []
    for fmt in serving.FORMATS:
        missing = serving.missing_packages(fmt)
        if missing:
            skipped.append(f"{fmt} (needs {', '.join(missing)})")
            continue
        path = out / FILES[fmt]
        serving.export(model, fmt, path, size)
        found[fmt] = serving.load_exported(path)
        sizes[fmt] = serving.size_mb(path)
    return found, sizes, size, "; ".join(skipped)


def differences(found: dict, photos: list) -> dict:
    """{name: largest |alpha - Keras path's alpha|} over the photos."""
    worst = {}
    for photo in photos:
        reference = found["keras"](photo).astype(np.int16)
        for name, alpha_of in found.items():
            worst[name] = max(worst.get(name, 0), int(np.abs(alpha_of(photo) - reference).max()))
    return worst


def measure(label: str, model_path: Path, out: Path, rounds: int) -> list[str]:
    """The markdown table rows of one model."""
    found, sizes, size, skipped = runners(model_path, out)
    big = serving.sample_photo(*FULL_HD, seed=1)
    small = serving.sample_photo(size, size, seed=2)
    times = {}
    for photo in (big, small):
        variants = {name: (lambda f=f, p=photo: f(p)) for name, f in found.items()}
        for name, (wall, cpu) in alternate(variants, rounds, warmup=2).items():
            times.setdefault(name, []).append(f"{wall * 1000:.1f} ({cpu * 1000:.1f})")
    checks = [serving.sample_photo(h, w, seed) for seed, (h, w) in enumerate(serving.CHECK_SIZES)]
    worst = differences(found, [big, small, *checks])
    print(f"{label}: input {size}x{size}" + (f"; skipped {skipped}" if skipped else ""))
    return [
        f"| {label} | {NAMES[name]} | {sizes[name]:.1f} | {times[name][0]} | {times[name][1]} | "
        + ("(reference)" if name == "keras" else str(worst[name]))
        + " |"
        for name in found
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else None,
        help=f"a .keras file (default: {DEFAULT_MODEL.relative_to(ROOT)} if it exists, else an untrained U-net)",
    )
    parser.add_argument(
        "--filter-scales", type=float, nargs="+", default=None, help="measure untrained U-nets of these filter scales"
    )
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per runtime and photo size")
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.export_speed", *(sys.argv[1:] if argv is None else argv)])

    cpu = hardware.cpu_info()
    print(f"benchmark: {command}")
    amx = None if cpu.flags is None else "amx_tile" in cpu.flags
    print(f"processor: {cpu.describe()}; native bfloat16: {cpu.native_bfloat16}; AMX: {amx}")
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, (label, path) in enumerate(models_to_measure(args, tmp)):
            out = tmp / f"exports{i}"
            out.mkdir()
            rows += measure(label, path, out, args.rounds)
    print(f"\nCommand: `{command}` ({os.cpu_count()} CPU cores, {cpu.describe()})\n")
    print(
        "| model | runtime | file size (MB) | 1920x1080 photo: ms (CPU ms) | input-size photo: ms (CPU ms) "
        "| largest alpha difference from Keras (grey levels) |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
