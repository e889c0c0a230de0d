"""The U-net's blocks, case by case: the shapes they map, their layers and weights, their argument errors."""

import re

import keras
import numpy as np
import pytest

from model_parts import DoubleConv, DownSample, UpSample

SHAPES = [(1, 32, 32, 3), (2, 64, 48, 5), (1, 8, 16, 1)]  # (batch, height, width, channels)


def apply(block, shape, skip_shape=None):
    """``block`` in a functional model of the given input shape(s), run on zeros: (model, output)."""
    inputs = [keras.Input(shape[1:])] + ([keras.Input(skip_shape[1:])] if skip_shape else [])
    model = keras.Model(inputs, block(*inputs))
    batch = [np.zeros(shape, np.float32)] + ([np.zeros(skip_shape, np.float32)] if skip_shape else [])
    return model, keras.ops.convert_to_numpy(model(batch))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("filters", [1, 4, 16])
def test_double_conv_keeps_height_and_width_and_sets_the_channels(shape, filters):
    model, out = apply(DoubleConv(filters, name="b"), shape)
    batch, height, width, _ = shape
    assert out.shape == (batch, height, width, filters)
    assert tuple(model.output.shape) == (None, height, width, filters)
    # Two convolutions and two BatchNorms: kernel, bias, gamma, beta twice; two moving means and variances.
    assert len(model.trainable_weights) == 8 and len(model.non_trainable_weights) == 4
    names = [layer.name for layer in model.layers[1:]]
    assert names == ["b_conv1", "b_drop1", "b_bn1", "b_relu1", "b_conv2", "b_drop2", "b_bn2", "b_relu2"]


@pytest.mark.parametrize("shape", SHAPES)
def test_down_sample_halves_height_and_width(shape):
    model, out = apply(DownSample(6, name="down1"), shape)
    batch, height, width, _ = shape
    assert out.shape == (batch, height // 2, width // 2, 6)
    assert model.layers[1].name == "down1_pool"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("skip_channels", [None, 1, 7])
def test_up_sample_doubles_height_and_width_and_concatenates_the_skip(shape, skip_channels):
    batch, height, width, _ = shape
    skip = (batch, 2 * height, 2 * width, skip_channels) if skip_channels else None
    model, out = apply(UpSample(4, name="up1"), shape, skip)
    assert out.shape == (batch, 2 * height, 2 * width, 4)
    concat = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    if skip_channels is None:  # the original's last block: no skip, nothing concatenated
        assert concat == []
    else:  # [up-convolved, skip] on the channel axis, then DoubleConv
        assert concat[0].name == "up1_concat"
        assert tuple(concat[0].output.shape) == (None, 2 * height, 2 * width, 4 + skip_channels)


@pytest.mark.parametrize("block", [DoubleConv, DownSample, UpSample])
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": 0}, "DoubleConv filters must be a positive integer. Received: filters=0"),
        ({"filters": -3}, "DoubleConv filters must be a positive integer. Received: filters=-3"),
        ({"filters": 2.5}, "DoubleConv filters must be a positive integer. Received: filters=2.5"),
        ({"filters": 8, "dropout": 1.0}, "DoubleConv dropout must be in [0, 1). Received: dropout=1.0"),
        ({"filters": 8, "dropout": -0.1}, "DoubleConv dropout must be in [0, 1). Received: dropout=-0.1"),
    ],
)
def test_bad_arguments_are_clear_errors(block, kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        block(**kwargs)
