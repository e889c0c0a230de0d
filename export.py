"""Exports a trained U-net for serving and phones: TensorFlow SavedModel, LiteRT or ONNX.

    python export.py --model runs/demo/best.keras --format onnx --out person.onnx
    python export.py --model runs/demo/best.keras --format litert --out person.tflite
    python export.py --model runs/demo/best.keras --format saved_model --out person_saved_model

The exported model takes what a client has, a uint8 RGB photo [1, H, W, 3] of any size
(input "image"), and returns the alpha results.py would cut it out with, uint8 [1, H, W]
(output "alpha"): the squashing to the model's input size and the resizing back are in the
graph (serving.py). Before the export is renamed into place, it is run with its own runtime
(TensorFlow, LiteRT, ONNX Runtime) on generated photos and compared with results.py's alpha.

LiteRT and ONNX need the optional packages: pip install -r requirements-export.txt
"""

from __future__ import annotations

import argparse
import sys
import time

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import images
import inference
import serving


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export.py",
        description="Export a trained U-net as one graph from a uint8 photo of any size to its alpha.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--model", required=True, help="a .keras model file, e.g. runs/demo/best.keras")
    parser.add_argument(
        "--format",
        required=True,
        choices=serving.FORMATS,
        help="saved_model (a folder, for TensorFlow Serving), litert (.tflite, for phones), onnx (.onnx), keras "
        "(.keras: the network alone, float32, its input fixed at its size, as results.py loads models/)",
    )
    parser.add_argument("--out", required=True, help="the folder (saved_model) or file (.tflite, .onnx) to write")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"model input size, a multiple of 32 (default: the model's, else its run's, else {images.DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--no-guided-filter",
        action="store_true",
        help="the alpha as the probabilities upsampled, as results.py --no-guided-filter (default: with its guided "
        "filter, as results.py)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Does the work of main(); returns the exit code."""
    # The cheap checks first: a missing package or an existing --out fails before the model loads.
    serving.check_format(args.format)
    out = serving.check_destination(args.format, args.out, args.overwrite)
    model = inference.load_model(args.model)
    size = inference.model_size(model, args.size, args.model)
    start = time.perf_counter()
    differences = serving.export(
        model, args.format, out, size, overwrite=args.overwrite, guided=not args.no_guided_filter
    )
    checked = ", ".join(f"{h}x{w}: {d}" for (h, w), d in differences.items())
    print(
        f"done: {out} ({args.format}, {serving.size_mb(out):.1f} MB, input {size}x{size}) in "
        f"{time.perf_counter() - start:.1f} s; largest alpha difference from results.py's on generated "
        f"photos {max(differences.values())} grey level(s) ({checked}; tolerance {serving.ALPHA_TOLERANCE})"
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("export.py", vars(args))
    try:
        return run(args)
    except (serving.ExportError, inference.ModelError, FileExistsError) as e:
        cli.error("export.py", str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
