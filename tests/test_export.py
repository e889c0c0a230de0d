"""export.py and serving.py: every format exports through the command line, runs with its own
runtime (TensorFlow, LiteRT, ONNX Runtime), and gives the alpha results.py computes, to within
serving.ALPHA_TOLERANCE grey levels; mistakes get one line and leave nothing behind."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import compose
import export
import images
import inference
import model as unet
import serving

ROOT = Path(__file__).resolve().parents[1]
OUT_NAMES = {
    "saved_model": "person_saved_model",
    "litert": "person.tflite",
    "onnx": "person.onnx",
    "keras": "person.keras",
}
FORMATS = [
    pytest.param(fmt, marks=pytest.mark.skipif(bool(serving.missing_packages(fmt)), reason=f"{fmt}: not installed"))
    for fmt in serving.FORMATS
]
# (height, width): shrunk (INTER_AREA, uneven factors), enlarged (INTER_LINEAR), a side below
# the input size (OpenCV's two-tap INTER_AREA), an exact 2x2 reduction (rounds half up).
PHOTO_SIZES = [(301, 187), (97, 61), (100, 400), (256, 256)]


@pytest.fixture(scope="module")
def model_file(small_unet_file):
    return small_unet_file


@pytest.fixture(scope="module")
def predictor(model_file):
    """What results.py runs: the model as inference.load_model returns it, in a Predictor."""
    model = inference.load_model(model_file)
    return inference.Predictor(model, inference.model_size(model))


def results_alpha(predictor, photo, guided=True):
    """results.py's alpha, spelled out: the guided filter's (or, unguided, the probabilities upsampled)."""
    prob = predictor(images.squash(photo, predictor.image_size)[None])[0]
    return compose.guided_alpha(photo, prob) if guided else compose.alpha_map(prob, *photo.shape[:2])


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_runs_and_matches_results(fmt, model_file, predictor, tmp_path, capsys):
    out = tmp_path / OUT_NAMES[fmt]
    argv = ["--model", str(model_file), "--format", fmt, "--out", str(out)]
    stale = out / "stale.txt" if fmt == "saved_model" else out
    if fmt != "onnx":  # saved_model and litert replace an existing output (a folder, a file)
        stale.parent.mkdir(exist_ok=True)
        stale.write_text("old")
        argv.append("--overwrite")
    assert export.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("export.py configuration:") and f"done: {out}" in printed
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary or moved-aside files left
    assert not stale.exists() or stale.read_bytes() != b"old"

    alpha_of = serving.load_exported(out)
    for seed, (height, width) in enumerate(PHOTO_SIZES):
        photo = serving.sample_photo(height, width, seed=10 + seed)
        alpha = alpha_of(photo)
        assert alpha.shape == (height, width) and alpha.dtype == np.uint8
        reference = results_alpha(predictor, photo)
        # The model's alpha has edges to get wrong (the guided filter smooths the untrained model's a little).
        assert results_alpha(predictor, photo, guided=False).std() > 10 and reference.std() > 5
        difference = np.abs(alpha.astype(np.int16) - reference).max()
        assert difference <= serving.ALPHA_TOLERANCE, (fmt, height, width, difference)


def test_unguided_export_matches_results_without_the_guided_filter(model_file, predictor, tmp_path):
    out = tmp_path / OUT_NAMES["saved_model"]
    argv = ["--model", str(model_file), "--format", "saved_model", "--out", str(out), "--no-guided-filter"]
    assert export.main(argv) == 0
    alpha_of = serving.load_exported(out)
    photo = serving.sample_photo(301, 187, seed=5)
    unguided, guided = (results_alpha(predictor, photo, g) for g in (False, True))
    assert np.abs(alpha_of(photo).astype(np.int16) - unguided).max() <= serving.ALPHA_TOLERANCE
    assert np.abs(unguided.astype(np.int16) - guided).max() > 2 * serving.ALPHA_TOLERANCE  # the two differ


def test_guided_coefficients_in_graph_ops_are_composes():
    rng = np.random.default_rng(0)
    guide = rng.random((32, 32, 3)).astype(np.float32)
    prob = (rng.random((32, 32)) > 0.5).astype(np.float32)
    a, b = compose.guided_coefficients(guide, prob, 3, 1e-4)
    got_a, got_b = serving.guided_coefficients(tf.constant(guide), tf.constant(prob), 3, 1e-4)
    np.testing.assert_allclose(got_a.numpy(), a, atol=2e-3)
    np.testing.assert_allclose(got_b.numpy(), b, atol=2e-3)


@pytest.mark.parametrize("size", [(301, 187), (97, 61), (100, 400), (256, 256), (384, 512), (1080, 1920), (1, 3)])
def test_squash_is_opencvs(size):
    photo = serving.sample_photo(*size, seed=3)
    got = serving.squash(tf.constant(photo[None]), 128)[0].numpy()
    assert np.array_equal(got, images.squash(photo, 128).astype(np.float32))
    cumulative = serving.squash(tf.constant(photo[None]), 128, cumulative=True)[0].numpy()  # the ONNX graph's
    assert np.array_equal(cumulative, got)


def test_missing_model(tmp_path, capsys):
    assert (
        export.main(["--model", str(tmp_path / "none.keras"), "--format", "onnx", "--out", str(tmp_path / "a.onnx")])
        == 2
    )
    assert capsys.readouterr().err.strip() == f"export.py: error: --model {tmp_path / 'none.keras'}: no such file"
    assert list(tmp_path.iterdir()) == []


def test_not_a_model(tmp_path, capsys):
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    assert export.main(["--model", str(fake), "--format", "saved_model", "--out", str(tmp_path / "sm")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a Keras model file" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_unknown_format(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--model", "m.keras", "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    assert exit_info.value.code == 2
    assert "argument --format: invalid choice: 'tflite'" in capsys.readouterr().err


def test_existing_out_is_kept(model_file, tmp_path, capsys):
    out = tmp_path / "person.onnx"
    out.write_bytes(b"keep me")
    assert export.main(["--model", str(model_file), "--format", "onnx", "--out", str(out)]) == 2
    assert "already exists: use --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


def test_wrong_suffix(model_file, tmp_path, capsys):
    assert export.main(["--model", str(model_file), "--format", "litert", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "a litert export is a file ending in .tflite" in capsys.readouterr().err


def test_missing_package_names_it(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(serving.PACKAGES, "onnx", {"no_such_module_xyz": "no-such-package"})
    assert export.main(["--model", str(model_file), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-package" in err and f"pip install -r {serving.REQUIREMENTS}" in err


def test_failed_check_leaves_nothing(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(serving, "ALPHA_TOLERANCE", -1)  # every export now "differs"
    out = tmp_path / "person_saved_model"
    assert export.main(["--model", str(model_file), "--format", "saved_model", "--out", str(out)]) == 2
    assert "differs from results.py's" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# The shipped model as a SavedModel here, as ONNX by the README's command (tests/test_readme.py; export.py
# checks its alpha); the LiteRT converter takes seconds more and runs the same layers of a small U-net above.
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.values[0] == "saved_model"])
def test_the_shipped_model_exports_with_results_alpha(fmt, tmp_path):
    """The model in models/ (MODEL.md), exported, gives results.py's alpha on odd-sized photos."""
    model = inference.load_model(ROOT / "models" / "person_unet.keras")
    shipped = inference.Predictor(model, inference.model_size(model))
    out = tmp_path / OUT_NAMES[fmt]
    serving.export(model, fmt, out)
    alpha_of = serving.load_exported(out)
    for seed, (height, width) in enumerate(PHOTO_SIZES):
        photo = serving.sample_photo(height, width, seed=20 + seed)
        difference = np.abs(alpha_of(photo).astype(np.int16) - results_alpha(shipped, photo)).max()
        assert difference <= serving.ALPHA_TOLERANCE, (fmt, height, width, difference)


def test_a_keras_export_is_fixed_at_its_training_size_and_cuts_out_as_before(tmp_path):
    """--format keras: what results.py loads by default; a run's best.keras (any size) fixed at its run's size."""
    run = tmp_path / "run"
    run.mkdir()
    net = unet.build_unet((None, None, 3), filter_scale=0.25)
    net.save(run / "best.keras")
    (run / "config.json").write_text('{"options": {"image_size": 64}}')
    out = tmp_path / "person_unet.keras"
    assert export.main(["--model", str(run / "best.keras"), "--format", "keras", "--out", str(out)]) == 0
    shipped = inference.load_model(out)
    assert tuple(shipped.inputs[0].shape) == (None, 64, 64, 3) and inference.model_size(shipped) == 64
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(shipped(x), net(x), atol=1e-6)
