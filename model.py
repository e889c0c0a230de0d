"""The original 5-level U-net (22,846,593 parameters at 128x128) and its training setup.

    build_unet(input_shape)  -> uncompiled keras.Model
    compile_unet(model, ...) -> compiled the original way: Adam with exponential decay,
                                binary cross-entropy, metrics accuracy, seed_iou and iou.

``python model.py`` prints the layer-by-layer summary, as the original did.
"""

from __future__ import annotations

import argparse

import keras
from keras import layers, ops

from model_parts import DownSample, UpSample

ENCODER_FILTERS = (64, 128, 256, 512, 512)  # the last DownSample is the bottleneck
DECODER_FILTERS = (512, 256, 128, 64)  # each UpSample takes the skip of the same size
BOTTLENECK_DROPOUT = 0.4  # bottleneck and last decoder block; every other dropout is 0
SIZE_MULTIPLE = 2 ** len(ENCODER_FILTERS)  # five 2x poolings: sizes must divide by 32

# The original optimizer: Adam with ExponentialDecay(0.002, 300, 0.98, staircase=True).
LEARNING_RATE = 0.002
DECAY_STEPS = 300
DECAY_RATE = 0.98


def check_image_size(height, width, what: str = "input_shape") -> None:
    """Raises ValueError unless every given (not None) size is a positive multiple of 32."""
    for size in (height, width):
        if size is not None and (int(size) <= 0 or int(size) % SIZE_MULTIPLE):
            raise ValueError(
                f"U-net height and width must be positive multiples of {SIZE_MULTIPLE} "
                f"(the model pools five times). Received: {what}={(height, width)}"
            )


def build_unet(input_shape: tuple = (None, None, 3), name: str = "unet") -> keras.Model:
    """Builds the original U-net, uncompiled.

    Args:
        input_shape: (height, width, channels). Height and width may be None (any
            multiple of 32 at call time) or fixed multiples of 32.
        name: model name.

    Returns:
        A functional ``keras.Model`` mapping (batch, H, W, C) images in [0, 1] to
        (batch, H, W, 1) person probabilities (float32 even under mixed precision).
    """
    if len(input_shape) != 3 or not input_shape[2]:
        raise ValueError(f"input_shape must be (height, width, channels). Received: input_shape={input_shape}")
    check_image_size(*input_shape[:2])

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for i, filters in enumerate(ENCODER_FILTERS, start=1):
        bottleneck = i == len(ENCODER_FILTERS)
        dropout = BOTTLENECK_DROPOUT if bottleneck else 0.0
        x = DownSample(filters, dropout=dropout, l2=bottleneck, name=f"down{i}")(x)
        skips.append(x)
    skips.pop()  # the bottleneck's output is not a skip

    for i, filters in enumerate(DECODER_FILTERS, start=1):
        x = UpSample(filters, name=f"up{i}")(x, skips.pop())
    # The original's last block returns to the input resolution with no skip (the first
    # operation was a max-pool, so there is no full-resolution feature map to join).
    x = UpSample(DECODER_FILTERS[-1], dropout=BOTTLENECK_DROPOUT, l2=True, name=f"up{len(DECODER_FILTERS) + 1}")(x)

    x = layers.Conv2D(1, 1, name="head_conv")(x)
    # float32 so that the loss and metrics stay exact under a mixed-precision policy.
    outputs = layers.Activation("sigmoid", dtype="float32", name="head_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="background_remover")
def seed_iou(y_true, y_pred):
    """The original project's IoU, exactly: soft intersection over hard union, per batch.

    intersection = sum(y_true * y_pred) with raw probabilities;
    union = count(y_true + (y_pred >= 0.5) >= 1) + 1e-6.
    Keras averages the per-batch ratios. This is not the standard IoU (see ``iou``); it
    is kept so that our figures compare with the original's published ~65%.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    intersection = ops.sum(y_true * y_pred)
    hard = ops.cast(y_pred >= 0.5, "float32")
    union = ops.sum(ops.cast(y_true + hard >= 1.0, "float32")) + 1e-6
    return intersection / union


def make_metrics() -> list:
    """accuracy (binary, at 0.5), seed_iou (the original's) and iou (standard, pooled)."""
    return [
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5),
        seed_iou,
        # Accumulates a confusion matrix over every pixel of the whole evaluation, then
        # reports TP / (TP + FP + FN) of the person class.
        keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou"),
    ]


def compile_unet(
    model: keras.Model,
    learning_rate: float = LEARNING_RATE,
    decay_steps: int = DECAY_STEPS,
    decay_rate: float = DECAY_RATE,
    jit_compile: bool = False,
) -> keras.Model:
    """Compiles ``model`` the original way and returns it.

    Adam with ``ExponentialDecay(learning_rate, decay_steps, decay_rate, staircase=True)``,
    binary cross-entropy, metrics ``accuracy``, ``seed_iou`` and ``iou``. XLA is off by
    default: on CPU it made the original's training step about 2x slower.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=decay_steps, decay_rate=decay_rate, staircase=True
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=make_metrics(),
        jit_compile=jit_compile,
    )
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Print the U-net's layer-by-layer summary.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--image-size", type=int, default=128, help="height and width, a multiple of 32")
    args = parser.parse_args(argv)
    try:
        check_image_size(args.image_size, args.image_size, what="--image-size")
    except ValueError as e:
        parser.error(str(e))
    build_unet((args.image_size, args.image_size, 3)).summary(line_length=130)


if __name__ == "__main__":
    main()
