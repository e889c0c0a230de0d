"""MediaPipe's selfie segmenter, run as MediaPipe runs it, to score beside our model.

    python -m benchmarks.full_size --peer mediapipe ccp=data-real/ccp/val ...

The model is ``selfie_segmentation.tflite`` (Apache-2.0), the general-purpose 256x256 model
of MediaPipe's Selfie Segmentation, exactly as the PyPI wheel ``mediapipe==0.10.14`` ships it.
MediaPipe itself is not installed (its dependency pins clash with ours): on first use
``pip download`` fetches that one wheel (35 MB, no dependencies) into a temporary folder of
the cache (``~/.cache/background-remover/``, or ``$XDG_CACHE_HOME``), the one file is taken
out of it, checked against its SHA-256 and kept, and the wheel is deleted. ``--mediapipe-model
PATH`` gives the file instead (then nothing is downloaded). It runs with the LiteRT
interpreter (``ai-edge-litert``, requirements-export.txt).

What MediaPipe's CPU graph does with a photo (``selfie_segmentation_cpu.binarypb`` in the same
wheel, and the calculators it names), and what ``MediaPipeSelfie`` does the same way:

- ImageToTensorCalculator (output 256x256, ``keep_aspect_ratio: false``, range [0, 1],
  ``BORDER_ZERO``): the whole photo is warped onto the tensor by ``cv::warpPerspective``,
  bilinear, its corners onto the tensor's corners, without keeping the aspect ratio, in
  8 bits; then scaled to float32 in [0, 1] (value / 255).
- InferenceCalculator: the network; its output (1, 256, 256, 1) is the person probability
  already (TensorsToSegmentationCalculator's ``activation: NONE``).
- TensorsToSegmentationCalculator: the probabilities resized to the photo's size by
  ``cv::resize`` (bilinear).

The person is where that probability is at least 0.5 (``metrics.THRESHOLD``), as for our model.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

import cli
import images

MEDIAPIPE = "mediapipe"  # the name --peer takes
MEDIAPIPE_WHEEL = "mediapipe==0.10.14"
# The wheel for one platform, whichever machine fetches it: the model file is the same in every
# platform's wheel, and this one is the one whose file the SHA-256 below is of.
WHEEL_PLATFORM = ("--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--only-binary=:all:")
MEDIAPIPE_MEMBER = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
MEDIAPIPE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
MEDIAPIPE_FILE = "selfie_segmentation.tflite"
# What LiteRT writes to the standard error when it allocates the tensors, every time: nothing to act on.
DELEGATE_NOTICE = re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU")


class PeerError(ValueError):
    """A peer model that cannot be fetched or run; the message is one line, naming the file or command."""


def cache_dir() -> Path:
    """Where fetched models are kept: $XDG_CACHE_HOME/background-remover (default ~/.cache/background-remover)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "background-remover"


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch_mediapipe(
    cache: str | Path | None = None, pip: list[str] | None = None, sha256: str = MEDIAPIPE_SHA256
) -> Path:
    """The path of selfie_segmentation.tflite in the cache, fetched from the mediapipe wheel the first time.

    Args:
        cache: the cache folder (default ``cache_dir()``).
        pip: the command that runs pip (default: this Python's ``-m pip``).
        sha256: what the file's SHA-256 must be.

    Raises:
        PeerError: pip failed, the wheel does not hold the file, or the file is not the expected one.
    """
    cache = Path(cache) if cache else cache_dir()
    target = cache / MEDIAPIPE_FILE
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PeerError(f"cannot create the cache folder {cache}: {e.strerror or e}") from None
    pip = pip or [sys.executable, "-m", "pip"]
    print(f"fetching {MEDIAPIPE_MEMBER} from the {MEDIAPIPE_WHEEL} wheel (35 MB) with pip, into {cache}", flush=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".wheel-") as tmp:
        command = [*pip, "download", MEDIAPIPE_WHEEL, "--no-deps", *WHEEL_PLATFORM, "--dest", tmp, "--quiet"]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as e:
            raise PeerError(f"cannot run {pip[0]}: {e.strerror or e}") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise PeerError(
                f"pip download {MEDIAPIPE_WHEEL} failed (exit {done.returncode}): {lines[-1] if lines else 'no message'};"
                " give the model file with --mediapipe-model PATH"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise PeerError(f"pip download {MEDIAPIPE_WHEEL} wrote no wheel into {tmp}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(MEDIAPIPE_MEMBER)
        except (KeyError, zipfile.BadZipFile) as e:
            raise PeerError(f"{wheels[0].name}: no {MEDIAPIPE_MEMBER} in it ({e})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise PeerError(f"{MEDIAPIPE_MEMBER} of {wheels[0].name} has SHA-256 {got}, expected {sha256}")
    images.write_atomic(target, data)
    return target


class MediaPipeSelfie:
    """MediaPipe's selfie segmenter on a photo, as MediaPipe's CPU graph runs it (see the module docstring).

    Args:
        path: the .tflite file: one float32 input (1, H, W, 3), one float32 output (1, H, W, 1).
        threads: the interpreter's threads (default: every core).

    Raises:
        PeerError: no such file, not a LiteRT model, another signature, or LiteRT not installed.
    """

    name = "MediaPipe selfie"

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise PeerError(f"{self.path}: no such model file")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise PeerError(
                "the peer runs with LiteRT, which is not installed: pip install -r requirements-export.txt"
            ) from None
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads or os.cpu_count() or 1)
            with cli.stderr_without(DELEGATE_NOTICE):
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PeerError(f"{self.path}: not a LiteRT model LiteRT can run ({reason})") from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()

        def shapes(details):
            return ", ".join(f"{np.dtype(d['dtype']).name} {tuple(int(n) for n in d['shape'])}" for d in details)

        ok = len(inputs) == 1 and len(outputs) == 1
        if ok:
            given, out = tuple(inputs[0]["shape"]), tuple(outputs[0]["shape"])
            ok = (
                len(given) == 4
                and given[0] == 1
                and given[3] == 3
                and out == (1, given[1], given[2], 1)
                and inputs[0]["dtype"] == np.float32
                and outputs[0]["dtype"] == np.float32
            )
        if not ok:
            raise PeerError(
                f"{self.path}: not MediaPipe's selfie segmenter: it takes {shapes(inputs)} and gives {shapes(outputs)}; "
                "expected float32 (1, H, W, 3) in and float32 (1, H, W, 1) out"
            )
        self.input_index, self.output_index = inputs[0]["index"], outputs[0]["index"]
        self.height, self.width = int(given[1]), int(given[2])
        self.sha256 = sha256_of(self.path)

    def tensor(self, photo: np.ndarray) -> np.ndarray:
        """The network's input from a uint8 RGB photo: (1, H, W, 3) float32 in [0, 1] (ImageToTensorCalculator)."""
        height, width = photo.shape[:2]
        corners = np.float32([[0, height], [0, 0], [width, 0], [width, height]])  # cv::boxPoints of the whole photo
        tensor_corners = np.float32([[0, self.height], [0, 0], [self.width, 0], [self.width, self.height]])
        warped = cv2.warpPerspective(
            photo,
            cv2.getPerspectiveTransform(corners, tensor_corners),
            (self.width, self.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return (warped.astype(np.float32) * np.float32(1 / 255))[None]

    def probability(self, photo: np.ndarray) -> np.ndarray:
        """The person probability at the photo's size, (height, width) float32 (TensorsToSegmentationCalculator)."""
        self.interpreter.set_tensor(self.input_index, self.tensor(photo))
        self.interpreter.invoke()
        small = self.interpreter.get_tensor(self.output_index)[0, ..., 0]
        return cv2.resize(small, (photo.shape[1], photo.shape[0]), interpolation=cv2.INTER_LINEAR)


def load_peer(name: str, model: str | Path | None = None) -> MediaPipeSelfie:
    """The peer ``name`` ("mediapipe"), from ``model`` or the cache (fetched the first time).

    Raises:
        PeerError: an unknown name, or a model that cannot be fetched or run.
    """
    if name != MEDIAPIPE:
        raise PeerError(f"unknown peer {name!r}: the one peer is {MEDIAPIPE!r}")
    return MediaPipeSelfie(model if model else fetch_mediapipe())
