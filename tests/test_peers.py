"""The peer of benchmarks/full_size.py (benchmarks/peers.py), with small LiteRT models the tests convert.

Nothing is downloaded: the model files are tf.functions with MediaPipe's signature (float32
(1, 256, 256, 3) in, (1, 256, 256, 1) out) whose outputs are known, and the wheel of
``fetch_mediapipe`` is a zip a fake pip writes.
"""

import json
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

import metrics
from benchmarks import full_size, peers
from conftest import brightness_model

PERSON, BACKGROUND = 153, 102  # 0.6 and 0.4 in [0, 1]; 0.2 and -0.2 in [-1, 1]


def convert(function, path):
    spec = tf.TensorSpec((1, 256, 256, 3), tf.float32)
    concrete = tf.function(function).get_concrete_function(spec)
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([concrete], function).convert())
    return path


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory):
    """A LiteRT model with MediaPipe's signature whose 'probability' is the mean of the three channels."""
    return convert(lambda x: tf.reduce_mean(x, axis=-1, keepdims=True), tmp_path_factory.mktemp("peer") / "mean.tflite")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """Our side: a .keras model that calls a pixel 'person' where the mean of its channels is over 0.5."""
    return brightness_model(tmp_path_factory.mktemp("ours") / "mean.keras", 20)


def person_photo(height, width):
    """A grey photo with a lighter 'person' in a box, and its mask (0/1)."""
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height - height // 5, width // 3 : width - width // 6] = 1
    photo = np.where(mask[..., None] > 0, PERSON, BACKGROUND).astype(np.uint8).repeat(3, axis=-1)
    return photo, mask


SIZES = ((300, 700), (61, 97), (512, 512), (1080, 810))


def write_split(folder, sizes=SIZES, prefix="p"):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i, (height, width) in enumerate(sizes):
        photo, mask = person_photo(height, width)
        cv2.imwrite(str(folder / "images" / f"{prefix}{i}.png"), photo)
        cv2.imwrite(str(folder / "masks" / f"{prefix}{i}.png"), mask * 255)
    return folder


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_the_peer_takes_values_in_0_1_and_gives_the_probability_at_the_photos_size(mean_model, height, width):
    segmenter = peers.MediaPipeSelfie(mean_model)
    photo, mask = person_photo(height, width)
    probability = segmenter.probability(photo)
    assert probability.shape == (height, width) and probability.dtype == np.float32
    # Inside the person and the background, away from the edge, the value in [0, 1] comes back as it went in.
    assert probability[(height * 3) // 5, (width * 3) // 5] == pytest.approx(PERSON / 255, abs=1e-6)
    assert probability[2, 2] == pytest.approx(BACKGROUND / 255, abs=1e-6)
    person = probability >= metrics.THRESHOLD
    assert metrics.mask_iou(mask.astype(bool), person) > 0.95


def test_the_photo_is_warped_as_mediapipe_does_it(mean_model):
    """ImageToTensorCalculator maps the photo's corners onto the tensor's: tensor pixel j samples photo column
    j * width / 256, so halving a 512-wide photo takes its even columns (a resize would average two)."""
    photo = np.zeros((512, 512, 3), np.uint8)
    photo[:, ::2] = 255
    tensor = peers.MediaPipeSelfie(mean_model).tensor(photo)
    assert tensor.shape == (1, 256, 256, 3) and tensor.dtype == np.float32
    assert np.array_equal(tensor, np.ones_like(tensor))


def test_the_peer_is_scored_beside_ours_and_kept_in_the_json(tmp_path, mean_model, ours, capsys, monkeypatch):
    split = write_split(tmp_path / "val")
    scores = tmp_path / "scores.json"
    argv = ["--model", str(ours), "--mediapipe-model", str(mean_model), "--json", str(scores), f"toy={split}"]
    assert full_size.main(argv) == 0
    out = capsys.readouterr().out
    assert "MediaPipe selfie IoU (mean) | MediaPipe selfie boundary IoU" in out
    report = json.loads(scores.read_text())
    ours_scores, theirs = report["toy default"], report["toy mediapipe"]
    assert ours_scores["photos"] == theirs["photos"] == len(SIZES)
    assert [r["photo"] for r in theirs["per_photo"]] == [r["photo"] for r in ours_scores["per_photo"]]
    assert theirs["iou"] > 0.95 and theirs["model_sha256"] == peers.sha256_of(mean_model)
    row = next(line for line in out.splitlines() if line.startswith("| toy |"))
    assert f"| {theirs['iou']:.3f} | {theirs['boundary_iou']:.3f} | " in row

    # Run again on the same photos: the peer's scores come from the JSON (the peer would fail if it ran).
    def fail(self, photo):
        raise AssertionError("the peer ran again")

    monkeypatch.setattr(peers.MediaPipeSelfie, "probability", fail)
    assert full_size.main(argv) == 0
    assert "0 splits scored, 1 kept from" in capsys.readouterr().out
    assert json.loads(scores.read_text())["toy mediapipe"] == theirs
    # Another photo list is scored anew.
    monkeypatch.undo()
    write_split(tmp_path / "more", sizes=[(200, 100)], prefix="q")
    for kind in ("images", "masks"):
        (tmp_path / "more" / kind / "q0.png").rename(split / kind / "q0.png")
    assert full_size.main(argv) == 0
    assert json.loads(scores.read_text())["toy mediapipe"]["photos"] == len(SIZES) + 1


def test_a_source_folder_is_scored_with_all_its_splits(tmp_path, mean_model, ours, capsys):
    source = tmp_path / "penn"
    # As the converters leave a held-out source: a split may be empty (here train/).
    for split, count in (("train", 0), ("val", 2), ("test", 3)):
        write_split(source / split, sizes=SIZES[:count], prefix=split)
    scores = tmp_path / "scores.json"
    argv = ["--model", str(ours), "--mediapipe-model", str(mean_model), "--json", str(scores), f"penn={source}"]
    assert full_size.main(argv) == 0
    report = json.loads(scores.read_text())
    assert report["penn default"]["photos"] == report["penn mediapipe"]["photos"] == 2 + 3
    assert "| penn | default | 5 |" in capsys.readouterr().out


def test_summarize_puts_the_peer_beside_each_source_and_scores_it_once(tmp_path, mean_model, ours, capsys, monkeypatch):
    splits = [f"a={write_split(tmp_path / 'a')}", f"b={write_split(tmp_path / 'b', sizes=SIZES[:2])}"]
    runs = []
    for name in ("run1", "run2"):
        runs.append(tmp_path / name)
        runs[-1].mkdir()
        assert full_size.main(["--model", str(ours), "--json", str(runs[-1] / "full_size_val.json"), *splits]) == 0
        (runs[-1] / "time.txt").write_text("600 1100 100\n")
    capsys.readouterr()
    calls = []
    probability = peers.MediaPipeSelfie.probability
    monkeypatch.setattr(peers.MediaPipeSelfie, "probability", lambda self, p: calls.append(1) or probability(self, p))
    argv = ["--summarize", *map(str, runs), "--mediapipe-model", str(mean_model)]
    assert full_size.main(argv) == 0
    assert len(calls) == len(SIZES) + 2  # each photo once, for both runs
    out = capsys.readouterr().out
    assert "| run | a | a (MediaPipe selfie) | b | b (MediaPipe selfie) | mean | mean (MediaPipe selfie) |" in out
    report = json.loads((runs[1] / "full_size_val.json").read_text())
    cells = [f"{report[k]['iou']:.3f} / {report[k]['boundary_iou']:.3f}" for k in ("a default", "a mediapipe")]
    assert f"| run2 | {cells[0]} | {cells[1]} |" in out
    assert "| 20 (10) |" in out  # training CPU minutes (wall)
    # Summarized again: the scores are in the runs' files now.
    assert full_size.main(argv) == 0
    assert len(calls) == len(SIZES) + 2
    assert capsys.readouterr().out == out


def test_summarize_without_a_peer_is_as_before(tmp_path, ours, capsys):
    run = tmp_path / "run"
    run.mkdir()
    split = write_split(tmp_path / "a", sizes=SIZES[:1])
    assert full_size.main(["--model", str(ours), "--json", str(run / "full_size_val.json"), f"a={split}"]) == 0
    (run / "time.txt").write_text("60 50 10\n")
    capsys.readouterr()
    assert full_size.main(["--summarize", str(run)]) == 0
    assert "| run | a | mean | training CPU min (wall) | ms per photo |" in capsys.readouterr().out


def one_line_error(capsys, message):
    err = capsys.readouterr().err.strip()
    assert err.startswith("full_size.py: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["missing", "not a model", "signature"])
def test_a_bad_peer_model_is_a_one_line_error_before_any_scoring(tmp_path, ours, capsys, case):
    split = write_split(tmp_path / "val", sizes=SIZES[:1])
    model = tmp_path / "peer.tflite"
    if case == "not a model":
        model.write_bytes(b"not a flatbuffer at all" * 10)
    elif case == "signature":
        convert(lambda x: x * 2.0, model)  # (1, 256, 256, 3) out: not one channel
    argv = ["--model", str(ours), "--mediapipe-model", str(model), "--json", str(tmp_path / "s.json"), str(split)]
    assert full_size.main(argv) == 2
    message = {
        "missing": f"{model}: no such model file",
        "not a model": f"{model}: not a LiteRT model",
        "signature": f"{model}: not MediaPipe's selfie segmenter: it takes float32 (1, 256, 256, 3) and gives "
        "float32 (1, 256, 256, 3)",
    }[case]
    one_line_error(capsys, message)
    assert not (tmp_path / "s.json").exists()


def test_a_missing_split_is_a_one_line_error(tmp_path, mean_model, capsys):
    assert full_size.main(["--mediapipe-model", str(mean_model), str(tmp_path / "nowhere")]) == 2
    one_line_error(capsys, f"{tmp_path / 'nowhere'} not found")


def fake_pip(tmp_path, member_bytes=b"the model", exit_code=0):
    """A 'pip' that writes a wheel holding the model file into --dest (and fails with exit_code, if not 0)."""
    script = tmp_path / "fake_pip.py"
    script.write_text(
        "import sys, zipfile\n"
        f"if {exit_code}:\n"
        "    print('ERROR: No matching distribution found for mediapipe==0.10.14', file=sys.stderr)\n"
        f"    sys.exit({exit_code})\n"
        "dest = sys.argv[sys.argv.index('--dest') + 1]\n"
        "with zipfile.ZipFile(dest + '/mediapipe-0.10.14-cp311-none-any.whl', 'w') as z:\n"
        f"    z.writestr({peers.MEDIAPIPE_MEMBER!r}, {member_bytes!r})\n"
        "    z.writestr('mediapipe/other.py', 'x = 1')\n"
    )
    return [sys.executable, str(script)]


def test_fetch_takes_the_one_file_out_of_the_wheel_once(tmp_path):
    import hashlib

    cache = tmp_path / "cache"
    expected = hashlib.sha256(b"the model").hexdigest()
    path = peers.fetch_mediapipe(cache, pip=fake_pip(tmp_path), sha256=expected)
    assert path == cache / "selfie_segmentation.tflite" and path.read_bytes() == b"the model"
    assert sorted(p.name for p in cache.iterdir()) == ["selfie_segmentation.tflite"]  # the wheel is gone
    # Kept: no pip the second time.
    assert peers.fetch_mediapipe(cache, pip=["/nonexistent/pip"], sha256=expected) == path


def test_fetch_refuses_another_file_and_reports_pips_failure(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(peers.PeerError, match="has SHA-256 .*, expected 0+$"):
        peers.fetch_mediapipe(cache, pip=fake_pip(tmp_path), sha256="0" * 64)
    assert not list(cache.iterdir())
    with pytest.raises(
        peers.PeerError, match="failed \\(exit 3\\): ERROR: No matching distribution .*--mediapipe-model"
    ):
        peers.fetch_mediapipe(cache, pip=fake_pip(tmp_path, exit_code=3))
    assert not list(cache.iterdir())


def test_a_stem_in_two_splits_of_a_source_is_a_one_line_error(tmp_path, mean_model, capsys):
    for split in ("train", "val"):
        write_split(tmp_path / "source" / split, sizes=SIZES[:1])
    assert full_size.main(["--mediapipe-model", str(mean_model), f"s={tmp_path / 'source'}"]) == 2
    one_line_error(capsys, f"{tmp_path / 'source'}: photos of the same stem in two splits: p0")
