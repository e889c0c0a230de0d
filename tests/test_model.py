"""The U-net is the original's, layer by layer, and trains, saves and reloads."""

import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import images
import model as unet

SEED_SUMMARY = Path(__file__).with_name("seed_summary.txt")
# Keras 2 printed a functional tf.concat as TFOpLambda; Keras 3 has a Concatenate layer.
KERAS2_TYPES = {"TFOpLambda": "Concatenate"}


def seed_layers():
    """(type prefix, output shape, params) of each layer of the original's summary."""
    pattern = re.compile(r"^\S+ \((?P<type>\w+)\)?\s+\[?\((?P<shape>[^)]*)\)?\s+(?P<params>\d+)")
    rows = []
    for line in SEED_SUMMARY.read_text().splitlines():
        m = pattern.match(line)
        if m:
            shape = tuple(None if s.strip() == "None" else int(s) for s in m["shape"].split(","))
            rows.append((KERAS2_TYPES.get(m["type"], m["type"]), shape, int(m["params"])))
    return rows


@pytest.fixture(scope="module")
def model128():
    return unet.build_unet((128, 128, 3))


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_parameter_counts_equal_the_original(model128):
    assert model128.count_params() == 22_846_593
    assert count(model128.trainable_weights) == 22_836_609
    assert count(model128.non_trainable_weights) == 9_984


def params_by_hand(filter_scale: float) -> int:
    """The U-net's parameter count from the layer formulas, without Keras.

    Conv2D k x k: k*k*c_in*c_out weights + c_out biases; Conv2DTranspose the same;
    BatchNormalization: 4 per channel (gamma, beta, moving mean, moving variance).
    """
    f = [max(1, round(n * filter_scale)) for n in (64, 128, 256, 512, 512)]
    d = [max(1, round(n * filter_scale)) for n in (512, 256, 128, 64)]

    def double_conv(c_in, c):
        return (9 * c_in * c + c) + 4 * c + (9 * c * c + c) + 4 * c

    total, c_in = 0, 3
    for c in f:  # DownSample: pool, DoubleConv
        total, c_in = total + double_conv(c_in, c), c
    for c, skip in zip(d, reversed(f[:-1]), strict=True):  # UpSample: deconv, concat skip, DoubleConv
        total, c_in = total + (9 * c_in * c + c) + double_conv(c + skip, c), c
    total += (9 * c_in * d[-1] + d[-1]) + double_conv(d[-1], d[-1])  # the last UpSample, no skip
    return total + d[-1] + 1  # head: 1x1 conv to one channel


@pytest.mark.parametrize(
    "filter_scale, expected",
    [(1.0, 22_846_593), (0.5, 5_718_593), (0.25, 1_433_121)],
)
def test_filter_scale_scales_the_parameters(filter_scale, expected):
    assert params_by_hand(filter_scale) == expected  # the hand formula, checked at 1.0 against the original
    model = unet.build_unet((64, 64, 3), filter_scale=filter_scale)
    assert model.count_params() == expected
    # About 1/4 and 1/16 of the original's parameters, with the same layer names.
    assert expected / 22_846_593 == pytest.approx(filter_scale**2, rel=0.01)
    full = [layer.name for layer in unet.build_unet((64, 64, 3)).layers]
    assert [layer.name for layer in model.layers] == full


def test_bad_filter_scale_is_a_clear_error():
    with pytest.raises(ValueError, match=r"filter_scale must be in \(0, 4\]\. Received: 0"):
        unet.build_unet((64, 64, 3), filter_scale=0)


def test_layer_sequence_equals_the_original_summary(model128):
    expected = seed_layers()
    assert len(expected) == 97  # every layer row of the seed summary
    got = [(type(layer).__name__, tuple(layer.output.shape), layer.count_params()) for layer in model128.layers]
    assert len(got) == len(expected)
    for i, ((gtype, gshape, gparams), (etype, eshape, eparams)) in enumerate(zip(got, expected, strict=True)):
        assert gtype.startswith(etype), f"layer {i}: {gtype} != {etype}"
        assert (gshape, gparams) == (eshape, eparams), f"layer {i} ({gtype})"


def test_layers_are_named_by_stage(model128):
    names = [layer.name for layer in model128.layers]
    assert names[:6] == ["image", "down1_pool", "down1_conv1", "down1_drop1", "down1_bn1", "down1_relu1"]
    assert "up1_concat" in names and "up5_concat" not in names  # the last block has no skip
    assert names[-2:] == ["head_conv", "head_sigmoid"]


def test_bottleneck_and_last_block_carry_dropout_and_l2(model128):
    drop = {layer.name: layer.rate for layer in model128.layers if isinstance(layer, keras.layers.Dropout)}
    assert {name for name, rate in drop.items() if rate} == {"down5_drop1", "down5_drop2", "up5_drop1", "up5_drop2"}
    assert set(drop.values()) == {0.0, 0.4}
    regularized = {layer.name for layer in model128.layers if getattr(layer, "kernel_regularizer", None) is not None}
    assert regularized == {"down5_conv1", "down5_conv2", "up5_conv1", "up5_conv2"}
    conv = model128.get_layer("down1_conv1")
    assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal)


@pytest.mark.parametrize("height, width", [(128, 128), (96, 160), (256, 192)])
def test_output_has_the_input_size(height, width):
    dynamic = unet.build_unet(filter_scale=0.25)
    fixed = unet.build_unet((height, width, 3), filter_scale=0.25)
    x = np.random.default_rng(0).random((2, height, width, 3), dtype=np.float32)
    for m in (dynamic, fixed):
        y = m(x, training=False)
        assert tuple(y.shape) == (2, height, width, 1)
        assert y.dtype == "float32"
        assert float(np.min(y)) >= 0.0 and float(np.max(y)) <= 1.0


@pytest.mark.parametrize("shape", [(100, 128, 3), (128, 48, 3), (0, 128, 3), (None, 96 + 1, 3)])
def test_size_not_a_multiple_of_32_is_a_clear_error(shape):
    message = "input_shape: the height and width must be positive multiples of 32 (the U-net pools five times). "
    with pytest.raises(ValueError, match=re.escape(message + f"Received: input_shape={shape}")):
        unet.build_unet(shape)


@pytest.mark.parametrize(
    "value, allow_zero, ok",
    [(128, False, True), ((96, None, 3), False, True), (0, True, True), (0, False, False), (100, False, False),
     (-32, False, False), ((None, 48), False, False)],
)  # fmt: skip
def test_one_size_check_for_the_model_and_the_command_lines(value, allow_zero, ok):
    if ok:
        images.check_size(value, "x", allow_zero=allow_zero)
    else:
        with pytest.raises(ValueError, match=re.escape("x: the height and width must be ") + r".*Received: x="):
            images.check_size(value, "x", allow_zero=allow_zero)


def test_bad_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        unet.build_unet((128, 128))


def synthetic_pairs(n=8, size=64, seed=0):
    """Noisy images with one bright ellipse each; the mask is the ellipse."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.random((n, size, size, 3), dtype=np.float32) * 0.5
    masks = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        ry, rx = rng.uniform(size * 0.15, size * 0.3, 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        masks[i, inside, 0] = 1
        images[i, inside] += rng.uniform(0.3, 0.5, 3).astype(np.float32)
    return images, masks


def test_tiny_overfit_run_learns():
    images, masks = synthetic_pairs()
    model = unet.compile_unet(unet.build_unet((64, 64, 3), filter_scale=0.25))
    history = model.fit(images, masks, batch_size=4, epochs=15, verbose=0, shuffle=True)
    # Training-mode figures: after a few dozen steps BatchNorm's moving statistics
    # (momentum 0.99) have not caught up yet, so inference-mode numbers lag behind.
    loss, iou = history.history["loss"], history.history["iou"]
    assert loss[-1] < 0.5 * loss[0], loss
    assert iou[-1] > 0.8 and iou[-1] > iou[0] + 0.3, iou


def test_save_and_reload_gives_identical_predictions(tmp_path):
    images, masks = synthetic_pairs(n=4)
    model = unet.compile_unet(unet.build_unet((64, 64, 3), filter_scale=0.25))
    model.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    expected = model.predict(images, verbose=0)

    # For further training, after importing model: compiled, with optimizer state.
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert int(again.optimizer.iterations) == 1
    history = again.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    assert {"loss", "accuracy", "seed_iou", "iou"} <= set(history.history)
    assert int(again.optimizer.iterations) == 2

    # For inference, in a process that has not imported our modules.
    np.save(tmp_path / "x.npy", images)
    code = (
        "import sys, numpy as np, keras\n"
        "m = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "assert 'model' not in sys.modules and 'model_parts' not in sys.modules\n"
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        cwd=tmp_path,
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_importing_prints_and_builds_nothing():
    code = "import model, model_parts, keras; assert keras.backend.get_uid('unet') == 1"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=unet.__file__.rsplit("/", 1)[0]
    )
    assert out.stdout == ""


def test_model_script_prints_the_summary(capsys):
    unet.main([])
    out = capsys.readouterr().out
    assert "Total params: 22,846,593" in out
    assert "Trainable params: 22,836,609" in out
    assert "Non-trainable params: 9,984" in out


# ---------------------------------------------------------------------------- improved-recipe options


def test_bce_dice_by_hand():
    # One 1x2 image: truth [1, 0], prediction [0.5, 0.5].
    y = np.array([[[[1.0], [0.0]]]], np.float32)
    p = np.array([[[[0.5], [0.5]]]], np.float32)
    bce = -np.log(0.5)  # both pixels
    dice = 1 - (2 * 0.5 + 1) / (1 + 1.0 + 1)  # overlap 0.5, |y| 1, |p| 1
    got = keras.ops.convert_to_numpy(unet.bce_dice(y, p))
    assert got.shape == (1,)
    assert got[0] == pytest.approx(bce + dice, rel=1e-4)
    perfect = keras.ops.convert_to_numpy(unet.bce_dice(y, np.clip(y, 1e-7, 1 - 1e-7)))
    assert perfect[0] == pytest.approx(0.0, abs=1e-4)


def test_cosine_schedule_warms_up_and_ends_at_zero():
    schedule = unet.make_schedule("cosine", learning_rate=0.002, total_steps=110, warmup_steps=10)
    lr = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    assert lr == pytest.approx([0.0, 0.001, 0.002, 0.001, 0.0], abs=1e-6)


def test_default_schedule_is_the_original():
    schedule = unet.make_schedule()
    assert float(schedule(0)) == pytest.approx(0.002)
    assert float(schedule(299)) == pytest.approx(0.002)
    assert float(schedule(300)) == pytest.approx(0.002 * 0.98)


def test_unknown_loss_or_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        unet.compile_unet(unet.build_unet((64, 64, 3), filter_scale=0.25), loss="dice")
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        unet.make_schedule("step")


def test_model_trained_with_bce_dice_reloads(tmp_path):
    model = unet.compile_unet(
        unet.build_unet((None, None, 3), filter_scale=0.25), loss="bce_dice", schedule="cosine", total_steps=20
    )
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    model.fit(x, (x[..., :1] > 0.5).astype(np.float32), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert again.loss.__name__ == "bce_dice"
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_recalibrate_batchnorm_matches_training_mode_without_dropout():
    model = unet.build_unet((64, 64, 3), filter_scale=0.25)
    x = np.random.default_rng(1).random((4, 64, 64, 3)).astype(np.float32)
    before = keras.ops.convert_to_numpy(model(x, training=False))
    assert unet.recalibrate_batchnorm(model, [x]) == 1
    # With one batch the moving statistics are that batch's, and dropout was off: inference
    # now computes what training mode computes without dropout.
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert any(d.rate > 0 for d in drops)  # restored afterwards
    after = keras.ops.convert_to_numpy(model(x, training=False))
    rates = [d.rate for d in drops]
    for d in drops:
        d.rate = 0.0
    reference = keras.ops.convert_to_numpy(model(x, training=True))
    for d, r in zip(drops, rates, strict=True):
        d.rate = r
    np.testing.assert_allclose(after, reference, atol=2e-3)
    assert np.abs(after - before).max() > 1e-2
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(n.momentum == 0.99 for n in norms)


def test_recalibrate_batchnorm_averages_batches():
    model = unet.build_unet((64, 64, 3), filter_scale=0.25)
    rng = np.random.default_rng(2)
    a, b = (rng.random((2, 64, 64, 3)).astype(np.float32) * s for s in (1.0, 3.0))
    unet.recalibrate_batchnorm(model, [(a, None), (b, None)])
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    # The first BatchNorm sees conv(maxpool(x)); its moving mean is the average of the two
    # batches' means, which lies strictly between them.
    mean = keras.ops.convert_to_numpy(first.moving_mean)
    unet.recalibrate_batchnorm(model, [a])
    mean_a = keras.ops.convert_to_numpy(first.moving_mean)
    unet.recalibrate_batchnorm(model, [b])
    mean_b = keras.ops.convert_to_numpy(first.moving_mean)
    np.testing.assert_allclose(mean, (mean_a + mean_b) / 2, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- the fused BatchNorm kernel


@pytest.mark.parametrize("policy, atol", [("float32", 1e-4), ("mixed_bfloat16", 0.05)])
def test_fused_batchnorm_computes_what_keras_batchnorm_computes(policy, atol):
    """Same outputs in training and inference mode, same moving statistics after a step."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        x = np.random.default_rng(3).normal(1.0, 2.0, (4, 64, 64, 3)).astype(np.float32)
        reference = unet.build_unet((64, 64, 3), filter_scale=0.25)
        fused = unet.build_unet((64, 64, 3), filter_scale=0.25)
        fused.set_weights(reference.get_weights())
        assert unet.use_fused_batchnorm(fused) == 20  # two in each of the ten DoubleConvs
        for training in (True, False):
            # Dropout off, so that training mode is deterministic and only BatchNorm differs.
            for m in (reference, fused):
                for layer in m.layers:
                    if isinstance(layer, keras.layers.Dropout):
                        layer.rate = 0.0
            a = keras.ops.convert_to_numpy(reference(x, training=training))
            b = keras.ops.convert_to_numpy(fused(x, training=training))
            np.testing.assert_allclose(b, a, atol=atol)
        norms = [(r, f) for r, f in zip(reference.layers, fused.layers, strict=True) if "_bn" in r.name]
        for r, f in norms:  # both updated their moving statistics the same way in training mode
            for name in ("moving_mean", "moving_variance"):
                np.testing.assert_allclose(
                    keras.ops.convert_to_numpy(getattr(f, name)),
                    keras.ops.convert_to_numpy(getattr(r, name)),
                    rtol=1e-3 if policy == "float32" else 0.05,
                    atol=1e-4 if policy == "float32" else 0.05,
                )
    finally:
        keras.mixed_precision.set_global_policy("float32")
