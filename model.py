"""The original 5-level U-net (22,846,593 parameters), a U-net on a pretrained encoder, and their training setup.

    build_unet(input_shape, filter_scale=1.0) -> uncompiled keras.Model
    build_encoder_unet(input_shape, encoder_weights="imagenet")
                                       -> a U-net decoder on EfficientNet-Lite0 (encoders.py),
                                          its encoder pretrained on ImageNet (or not: None)
    build(input_shape, encoder="none", ...) -> either of them, as train.py's --encoder picks
    compile_unet(model, ...)           -> compiled the original way: Adam with exponential
                                          decay, binary cross-entropy, metrics accuracy,
                                          seed_iou and iou (metrics.py).

``python model.py`` prints the layer-by-layer summary, as the original did (--encoder: the other's).
"""

from __future__ import annotations

import argparse
import types

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import keras
import tensorflow as tf
from keras import layers, ops

import encoders
from images import DEFAULT_SIZE, check_size
from metrics import PACKAGE, make_metrics
from model_parts import DecoderBlock, DownSample, UpSample

ENCODER_FILTERS = (64, 128, 256, 512, 512)  # the last DownSample is the bottleneck
DECODER_FILTERS = (512, 256, 128, 64)  # each UpSample takes the skip of the same size
BOTTLENECK_DROPOUT = 0.4  # bottleneck and last decoder block; every other dropout is 0

# The encoder U-net's decoder: one block per encoder resolution, from stride 16 back to the input's.
ENCODER_DECODER_FILTERS = (96, 64, 32, 24, 16)
ENCODERS = ("none", *encoders.ENCODERS)  # train.py's --encoder; "none": the original U-net

# The original optimizer: Adam with ExponentialDecay(0.002, 300, 0.98, staircase=True).
LEARNING_RATE = 0.002
DECAY_STEPS = 300
DECAY_RATE = 0.98


def check_filter_scale(filter_scale: float, what: str = "filter_scale") -> None:
    """Raises ValueError unless 0 < filter_scale <= 4: the one check of the filter multiplier."""
    if not 0 < filter_scale <= 4:
        raise ValueError(f"{what} must be in (0, 4]. Received: {filter_scale!r}")


def scaled_filters(filters: int, filter_scale: float) -> int:
    """A block's filter count at ``filter_scale`` (1.0: the original's), at least 1."""
    return max(1, round(filters * filter_scale))


def build_unet(input_shape: tuple = (None, None, 3), name: str = "unet", filter_scale: float = 1.0) -> keras.Model:
    """Builds the original U-net, uncompiled.

    Args:
        input_shape: (height, width, channels). Height and width may be None (any
            multiple of 32 at call time) or fixed multiples of 32.
        name: model name.
        filter_scale: multiplies every block's filter count, in (0, 4]. 1.0 is the
            original, exactly (22,846,593 parameters); 0.5 and 0.25 have about 1/4 and
            1/16 of its parameters and compute, for laptops and tests. Layer names do not
            change, and a saved model keeps its filter counts (they are in its config).

    Returns:
        A functional ``keras.Model`` mapping (batch, H, W, C) images in [0, 1] to
        (batch, H, W, 1) person probabilities (float32 even under mixed precision).
    """
    if len(input_shape) != 3 or not input_shape[2]:
        raise ValueError(f"input_shape must be (height, width, channels). Received: input_shape={input_shape}")
    check_size(input_shape, "input_shape")
    check_filter_scale(filter_scale)
    encoder = [scaled_filters(f, filter_scale) for f in ENCODER_FILTERS]
    decoder = [scaled_filters(f, filter_scale) for f in DECODER_FILTERS]

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for i, filters in enumerate(encoder, start=1):
        bottleneck = i == len(encoder)
        dropout = BOTTLENECK_DROPOUT if bottleneck else 0.0
        x = DownSample(filters, dropout=dropout, l2=bottleneck, name=f"down{i}")(x)
        skips.append(x)
    skips.pop()  # the bottleneck's output is not a skip

    for i, filters in enumerate(decoder, start=1):
        x = UpSample(filters, name=f"up{i}")(x, skips.pop())
    # The original's last block returns to the input resolution with no skip (the first
    # operation was a max-pool, so there is no full-resolution feature map to join).
    x = UpSample(decoder[-1], dropout=BOTTLENECK_DROPOUT, l2=True, name=f"up{len(decoder) + 1}")(x)

    x = layers.Conv2D(1, 1, name="head_conv")(x)
    # float32 so that the loss and metrics stay exact under a mixed-precision policy.
    outputs = layers.Activation("sigmoid", dtype="float32", name="head_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def build_encoder_unet(
    input_shape: tuple = (None, None, 3),
    encoder: str = "efficientnet_lite0",
    encoder_weights: str | None = None,
    decoder_filters: tuple = ENCODER_DECODER_FILTERS,
    name: str = "encoder_unet",
    filter_scale: float = 1.0,
) -> keras.Model:
    """Builds a U-net on a pretrained encoder, uncompiled: the same contract as ``build_unet``.

    The encoder (encoders.py) turns the image into features at strides 2, 4, 8, 16 and 32. The
    decoder starts from the deepest and, per block (model_parts.DecoderBlock), doubles the
    resolution, joins the encoder's features of that resolution and applies two 3x3
    Conv-BN-ReLU; its last block returns to the input's resolution with no skip. A 1x1
    convolution and a sigmoid give the person's probability.

    Args:
        input_shape: (height, width, 3); height and width None or multiples of 32.
        encoder: "efficientnet_lite0" (the one there is).
        encoder_weights: None (random), "imagenet" (the pinned package of
            requirements.txt) or the path of a PyTorch .pth state dict (encoders.load_weights).
        decoder_filters: the five decoder blocks' filter counts, deepest first.
        name: model name.
        filter_scale: multiplies the decoder's filter counts, in (0, 4] (the encoder's are fixed).

    Returns:
        A functional ``keras.Model`` mapping (batch, H, W, 3) images in [0, 1] to
        (batch, H, W, 1) person probabilities (float32 even under mixed precision).

    Raises:
        encoders.WeightsError: weights that cannot be found or do not fit, in one line.
    """
    if encoder not in encoders.ENCODERS:
        raise ValueError(f"encoder must be one of {encoders.ENCODERS}. Received: encoder={encoder!r}")
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3). Received: input_shape={input_shape}")
    check_size(input_shape, "input_shape")
    check_filter_scale(filter_scale)
    if len(decoder_filters) != len(encoders.FEATURE_CHANNELS):
        raise ValueError(f"decoder_filters needs {len(encoders.FEATURE_CHANNELS)} counts. Received: {decoder_filters}")

    inputs = keras.Input(shape=input_shape, name="image")
    *skips, x = encoders.efficientnet_lite0(inputs)  # strides 2, 4, 8, 16; the deepest, 32
    for i, filters in enumerate(decoder_filters, start=1):
        x = DecoderBlock(scaled_filters(filters, filter_scale), name=f"decoder{i}")(x, skips.pop() if skips else None)

    x = layers.Conv2D(1, 1, name="head_conv")(x)
    # float32 so that the loss and metrics stay exact under a mixed-precision policy.
    outputs = layers.Activation("sigmoid", dtype="float32", name="head_sigmoid")(x)
    model = keras.Model(inputs, outputs, name=name)
    if encoder_weights is not None:
        encoders.load_weights(model, encoder_weights)
    return model


def build(
    input_shape: tuple = (None, None, 3),
    encoder: str = "none",
    encoder_weights: str | None = None,
    filter_scale: float = 1.0,
) -> keras.Model:
    """The U-net train.py's --encoder picks: "none", the original (``build_unet``), else ``build_encoder_unet``."""
    if encoder == "none":
        return build_unet(input_shape, filter_scale=filter_scale)
    return build_encoder_unet(input_shape, encoder, encoder_weights, filter_scale=filter_scale)


@keras.saving.register_keras_serializable(package=PACKAGE)
def bce_dice(y_true, y_pred):
    """Binary cross-entropy plus the soft Dice loss, per image (train.py --loss bce_dice).

    Dice = 1 - (2 |y p| + 1) / (|y| + |p| + 1) over each image's pixels: it weighs the
    person's overlap directly, whatever share of the photo the person covers.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    overlap = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    return bce + 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)


LOSSES = {"bce": keras.losses.BinaryCrossentropy, "bce_dice": lambda: bce_dice}
SCHEDULES = ("exponential", "cosine")


def make_schedule(
    schedule: str = "exponential",
    learning_rate: float = LEARNING_RATE,
    decay_steps: int = DECAY_STEPS,
    decay_rate: float = DECAY_RATE,
    total_steps: int = 0,
    warmup_steps: int = 0,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The learning-rate schedule.

    'exponential' is the original's ``ExponentialDecay(learning_rate, decay_steps,
    decay_rate, staircase=True)``. 'cosine' rises linearly from 0 over ``warmup_steps``
    and then falls along a cosine to 0 at ``total_steps`` (the run's last step).
    """
    if schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=decay_steps, decay_rate=decay_rate, staircase=True
        )
    if schedule == "cosine":
        if total_steps <= warmup_steps:
            raise ValueError(f"the cosine schedule needs total_steps > warmup_steps; got {total_steps}, {warmup_steps}")
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate,
            decay_steps=total_steps - warmup_steps,
            alpha=0.0,
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


def compile_unet(
    model: keras.Model,
    learning_rate: float = LEARNING_RATE,
    decay_steps: int = DECAY_STEPS,
    decay_rate: float = DECAY_RATE,
    jit_compile: bool = False,
    loss: str = "bce",
    schedule: str = "exponential",
    total_steps: int = 0,
    warmup_steps: int = 0,
) -> keras.Model:
    """Compiles ``model`` (by default the original way) and returns it.

    Adam with ``make_schedule(...)`` (the original's exponential decay unless
    ``schedule='cosine'``), binary cross-entropy (or 'bce_dice'), metrics ``accuracy``,
    ``seed_iou`` and ``iou``. XLA is off by default: it made training slower on the CPUs
    measured (README, "Training speed").
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {tuple(LOSSES)}")
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=make_schedule(schedule, learning_rate, decay_steps, decay_rate, total_steps, warmup_steps)
        ),
        loss=LOSSES[loss](),
        metrics=make_metrics(),
        jit_compile=jit_compile,
    )
    # Creates Adam's slot variables now: created inside the first traced training step
    # instead, they take about ten times longer (seconds, for a hundred weights).
    model.optimizer.build(model.trainable_variables)
    return model


def _fused_batchnorm_call(self, inputs, training=None, mask=None):
    """BatchNormalization.call with TensorFlow's fused kernel (see ``use_fused_batchnorm``)."""
    if mask is not None:
        return type(self).call(self, inputs, training=training, mask=mask)
    gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
    if training and self.trainable:
        empty = tf.constant([], tf.float32)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon, is_training=True
        )
        # The kernel returns the unbiased (n - 1) variance; Keras averages the biased one.
        n = ops.cast(ops.prod(ops.shape(inputs)[:-1]), "float32")
        variance = variance * (n - 1.0) / n
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
    else:
        outputs, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=gamma,
            offset=beta,
            mean=ops.cast(self.moving_mean, "float32"),
            variance=ops.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon,
            is_training=False,
        )
    return ops.cast(outputs, self.compute_dtype)


def use_fused_batchnorm(model: keras.Model) -> int:
    """Runs every BatchNormalization layer of ``model`` with TensorFlow's fused kernel.

    The same computation as Keras' layer (batch statistics while training, the biased
    variance in the moving averages, moving statistics at inference), in one kernel
    instead of a dozen element-wise passes over the activations, which Keras 3 runs in
    float32 even under mixed precision. Only these layer objects change: their configs,
    weights and saved files stay plain ``BatchNormalization``, so a model trained this
    way loads anywhere. Call it after building or loading, before training or predicting.

    Returns:
        How many layers were switched (0 unless the backend is TensorFlow).
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    switched = 0
    for layer in model.layers:
        if (
            isinstance(layer, layers.BatchNormalization)
            and layer.axis in (-1, len(layer.input.shape) - 1)
            and len(layer.input.shape) == 4
            and layer.center
            and layer.scale
            and not layer.renorm
        ):
            layer.call = types.MethodType(_fused_batchnorm_call, layer)
            switched += 1
    return switched


def recalibrate_batchnorm(model: keras.Model, batches) -> int:
    """Re-estimates every BatchNormalization layer's moving mean and variance ("precise BN").

    The original net puts Dropout before BatchNorm and keeps moving averages with momentum
    0.99. At inference the averages lag behind the weights, and lack dropout's extra
    variance, so the predictions of a model saved mid-run can be much worse than its
    training-mode outputs (validation IoU swings from epoch to epoch). This runs the
    model in training mode with dropout switched off over ``batches`` and sets each
    layer's moving statistics to the plain average of its batch statistics. Weights and
    the optimizer are untouched.

    Args:
        model: a U-net (or any Keras model).
        batches: an iterable of input batches (images only, or (images, masks) pairs).

    Returns:
        The number of batches used.
    """
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    drops = [layer for layer in model.layers if isinstance(layer, layers.Dropout)]
    momenta, rates = [n.momentum for n in norms], [d.rate for d in drops]
    count = 0
    try:
        for d in drops:
            d.rate = 0.0
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for n in norms:  # a running average: the k-th batch gets weight 1 / (k + 1)
                n.momentum = count / (count + 1.0)
            model(x, training=True)
            count += 1
    finally:
        for n, m in zip(norms, momenta, strict=True):
            n.momentum = m
        for d, r in zip(drops, rates, strict=True):
            d.rate = r
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Print the U-net's layer-by-layer summary (the original's, or with --encoder the encoder U-net's).",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--image-size", type=int, default=DEFAULT_SIZE, help="height and width, a multiple of 32")
    parser.add_argument(
        "--encoder", default="none", choices=ENCODERS, help="none: the original U-net; else the U-net on that encoder"
    )
    args = parser.parse_args(argv)
    try:
        check_size(args.image_size, "--image-size")
    except ValueError as e:
        parser.error(str(e))
    build((args.image_size, args.image_size, 3), args.encoder).summary(line_length=130)


if __name__ == "__main__":
    main()
