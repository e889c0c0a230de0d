"""Building blocks of the U-net, as in the original project, and the encoder U-net's decoder block.

Each block is a small callable that adds built-in Keras layers to a functional graph
(no custom ``Layer`` subclasses), so that ``model.summary()`` lists every layer like the
original's summary did and a saved ``.keras`` file loads with ``safe_mode=True`` and no
``custom_objects``. Layers are named by stage: ``down1_conv1``, ``up2_concat``, ...
"""

from __future__ import annotations

from keras import layers, regularizers

# The original used Keras' 'l2' shorthand, which means L2(0.01).
L2_FACTOR = 0.01


class DoubleConv:
    """(Conv2D 3x3 'same', he_normal => Dropout => BatchNormalization => ReLU) * 2.

    Dropout comes before BatchNormalization, as in the original.

    Args:
        filters: number of filters of both convolutions.
        dropout: dropout rate after each convolution (the original used 0 except in the
            bottleneck and the last decoder block, which used 0.4).
        l2: if true, both convolutions get an L2(0.01) kernel regularizer.
        name: prefix of the layer names.

    Input shape: (batch, height, width, channels). Output shape: (batch, height, width, filters).
    """

    def __init__(self, filters: int, dropout: float = 0.0, l2: bool = False, name: str = "block"):
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"DoubleConv filters must be a positive integer. Received: filters={filters!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DoubleConv dropout must be in [0, 1). Received: dropout={dropout!r}")
        self.filters, self.dropout, self.l2, self.name = filters, dropout, l2, name

    def __call__(self, x):
        for i in (1, 2):
            x = layers.Conv2D(
                self.filters,
                3,
                padding="same",
                kernel_initializer="he_normal",
                kernel_regularizer=regularizers.L2(L2_FACTOR) if self.l2 else None,
                name=f"{self.name}_conv{i}",
            )(x)
            x = layers.Dropout(self.dropout, name=f"{self.name}_drop{i}")(x)
            x = layers.BatchNormalization(name=f"{self.name}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{self.name}_relu{i}")(x)
        return x


class DownSample:
    """MaxPooling2D 2x2 => DoubleConv: halves height and width.

    The original pools first, so the very first operation on the input is a max-pool.
    """

    def __init__(self, filters: int, dropout: float = 0.0, l2: bool = False, name: str = "down"):
        self.conv = DoubleConv(filters, dropout, l2, name=name)
        self.name = name

    def __call__(self, x):
        x = layers.MaxPooling2D(2, name=f"{self.name}_pool")(x)
        return self.conv(x)


class UpSample:
    """Conv2DTranspose 3x3 stride 2 => Concatenate [up, skip] on channels => DoubleConv.

    Doubles height and width. With ``skip=None`` (the original's last block) there is no
    concatenation.
    """

    def __init__(self, filters: int, dropout: float = 0.0, l2: bool = False, name: str = "up"):
        self.filters, self.name = filters, name
        self.conv = DoubleConv(filters, dropout, l2, name=name)

    def __call__(self, x, skip=None):
        # Default (glorot_uniform) initializer, as in the original.
        x = layers.Conv2DTranspose(self.filters, 3, strides=2, padding="same", name=f"{self.name}_deconv")(x)
        if skip is not None:
            x = layers.Concatenate(axis=-1, name=f"{self.name}_concat")([x, skip])
        return self.conv(x)


class DecoderBlock:
    """UpSampling2D x2 (nearest) => Concatenate [up, skip] => (Conv2D 3x3 => BatchNormalization => ReLU) * 2.

    The decoder block of the encoder U-net (model.build_encoder_unet), as segmentation
    models on pretrained encoders build it: the convolutions have no bias (the BatchNorm
    that follows has one) and start from he_normal. With ``skip=None`` (the last block,
    back to the input's resolution) there is no concatenation.
    """

    def __init__(self, filters: int, name: str = "decoder"):
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"DecoderBlock filters must be a positive integer. Received: filters={filters!r}")
        self.filters, self.name = filters, name

    def __call__(self, x, skip=None):
        x = layers.UpSampling2D(2, name=f"{self.name}_up")(x)
        if skip is not None:
            x = layers.Concatenate(axis=-1, name=f"{self.name}_concat")([x, skip])
        for i in (1, 2):
            x = layers.Conv2D(
                self.filters,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"{self.name}_conv{i}",
            )(x)
            x = layers.BatchNormalization(name=f"{self.name}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{self.name}_relu{i}")(x)
        return x
