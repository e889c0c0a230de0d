"""Shared test setup: run from the repository root, quiet TensorFlow, fixed seeds."""

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


def write_split(root, n=5, size=64, ext=".jpg", seed=0):
    """A split folder of n noisy photos with a bright square each, and their 0/255 masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = (rng.random((size, size, 3)) * 80).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        a = int(rng.integers(0, size // 2))
        mask[a : a + size // 2, a : a + size // 2] = 255
        image[mask > 0] = 220
        cv2.imwrite(str(root / "images" / f"img{i:03d}{ext}"), image)
        cv2.imwrite(str(root / "masks" / f"img{i:03d}.png"), mask)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """data/{train,val,test} at 64x64: 12, 4 and 4 photos."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    for seed, (split, n) in enumerate((("train", 12), ("val", 4), ("test", 4))):
        write_split(root / split, n=n, seed=seed)
    return root


@pytest.fixture(scope="session")
def small_unet_file(tmp_path_factory):
    """An untrained U-net (filter_scale 0.25, any input size, 128 by default) saved as .keras, its
    BatchNorm statistics taken from generated photos so that its probabilities spread over (0, 1)
    instead of a narrow band: the export, the service and the page are tested on it."""
    import images
    import model as unet
    import serving

    keras.utils.set_random_seed(0)
    net = unet.build_unet((None, None, 3), filter_scale=0.25)
    photos = [images.squash(serving.sample_photo(200 + 40 * i, 300, seed=i), 128) for i in range(4)]
    unet.recalibrate_batchnorm(net, [np.stack(photos).astype(np.float32) / 255.0])
    path = tmp_path_factory.mktemp("model") / "untrained.keras"
    net.save(path)
    return path


def brightness_model(path, slope):
    """Saves a .keras model that calls a pixel 'person' when it is bright, p = sigmoid(slope (mean(RGB) - 0.5)),
    at ``path`` and returns the path: a model whose every prediction a test can compute by hand."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[1].set_weights([np.full((1, 1, 3, 1), slope / 3, np.float32), np.array([-slope / 2], np.float32)])
    model.save(path)
    return path


def with_exif_orientation(jpeg, orientation):
    """``jpeg`` with an EXIF block holding only the orientation tag (6: stored sideways)."""
    entry = struct.pack("<HHII", 0x0112, 3, 1, orientation)  # tag, type SHORT, count, value
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
