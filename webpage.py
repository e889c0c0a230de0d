"""Builds the browser page (web/): the model exported to ONNX, and ONNX Runtime Web's files beside it.

    npm ci                                              # once: the pinned onnxruntime-web (package-lock.json)
    python webpage.py                                   # the shipped model -> web/model/person.onnx, web/ort/
    python webpage.py --model runs/demo/best.keras --out site --overwrite    # another model, another folder

``make web`` runs both. The page (web/index.html, app.js, worker.js, style.css) runs the
exported graph (export.py --format onnx: the photo of any size in, its alpha out, the guided
filter inside) with onnxruntime-web's WebAssembly backend, in a Web Worker, entirely in the
browser. The folder is then static: serve it with any web server, or publish it as it is
(``make serve-web`` serves it on this machine). The export is checked against results.py's
alpha before it is renamed into place, as export.py does.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import images
import inference
import results
import serving

ROOT = Path(__file__).resolve().parent
WEB_DIR = ROOT / "web"
PAGE_FILES = ("index.html", "app.js", "worker.js", "style.css")
ORT_DIST = ROOT / "node_modules" / "onnxruntime-web" / "dist"
# What the page loads of onnxruntime-web: its WebAssembly-only build as one ES module (the
# Emscripten glue included), and the single-instruction-multiple-data WebAssembly binary that
# runs on one thread or, where the page is cross-origin isolated, several.
ORT_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILE = Path("model") / "person.onnx"
# Debian's Chromium headless, as the page's test and benchmark drive it (Playwright's executable_path: its own
# browser download fails here): as root in a container, without a screen or a network, so no sandbox, no GPU and
# none of Chromium's own connections.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def check_runtime(dist: Path = ORT_DIST) -> None:
    """Raises FileNotFoundError, saying how to install it, unless onnxruntime-web's files are in ``dist``."""
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{dist / missing[0]}: onnxruntime-web is not installed: run npm ci in {ROOT} (Node.js and npm)"
        )


def copy_atomic(source: Path, target: Path) -> None:
    """A copy under a temporary name, then renamed (an interrupted build leaves no half file)."""
    tmp = images.tmp_name(target)
    try:
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    finally:
        images.remove_tmp(tmp)


def build(model, out: str | Path = WEB_DIR, size: int | None = None, overwrite: bool = False, dist: Path = ORT_DIST):
    """Writes the page into ``out``: its own files (unless ``out`` is web/ itself), onnxruntime-web's, the model.

    Args:
        model: a Keras U-net (inference.load_model).
        out: the folder, created if needed.
        size: the model's input size (inference.model_size).
        overwrite: replace an existing model file.
        dist: onnxruntime-web's dist/ folder (node_modules).

    Returns:
        serving.export's {(height, width): largest alpha difference from results.py's}.

    Raises:
        FileNotFoundError: onnxruntime-web not installed; FileExistsError: a model there already;
        serving.ExportError: an export that does not match results.py.
    """
    check_runtime(dist)
    out = Path(out)
    model_path = out / MODEL_FILE
    if model_path.exists() and not overwrite:
        raise FileExistsError(f"{model_path} already exists: use --overwrite or choose another --out")
    (out / "ort").mkdir(parents=True, exist_ok=True)
    model_path.parent.mkdir(exist_ok=True)
    if out.resolve() != WEB_DIR.resolve():
        for name in PAGE_FILES:
            copy_atomic(WEB_DIR / name, out / name)
    for name in ORT_FILES:
        copy_atomic(dist / name, out / "ort" / name)
    return serving.export(model, "onnx", model_path, size, overwrite=overwrite)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="webpage.py",
        description="Build the browser page: the model as ONNX and onnxruntime-web beside web/'s files.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=str(results.SHIPPED_MODEL),
        help="a .keras model file (default: the model shipped with the repository; see MODEL.md)",
    )
    parser.add_argument("--out", default=str(WEB_DIR), help="the folder to build the page in")
    parser.add_argument(
        "--size", type=int, default=None, help="model input size (default: the model's, as results.py and export.py)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the model a previous build exported")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Does the work of main(); returns the exit code."""
    check_runtime()  # before the model loads: the missing npm ci fails at once
    serving.check_format("onnx")
    model = inference.load_model(args.model)
    size = inference.model_size(model, args.size, args.model)
    start = time.perf_counter()
    differences = build(model, args.out, size, args.overwrite)
    out = Path(args.out)
    print(
        f"done: {out}/ in {time.perf_counter() - start:.1f} s: {MODEL_FILE} ({serving.size_mb(out / MODEL_FILE):.1f} MB, "
        f"input {size}x{size}, within {max(differences.values())} grey level(s) of results.py's alpha) and "
        f"onnxruntime-web ({sum(serving.size_mb(out / 'ort' / name) for name in ORT_FILES):.1f} MB); "
        f"serve the folder (make serve-web) and open it"
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("webpage.py", vars(args))
    try:
        return run(args)
    except (serving.ExportError, inference.ModelError, FileNotFoundError, FileExistsError) as e:
        cli.error("webpage.py", str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
