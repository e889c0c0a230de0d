"""results.py on photos the tests write, with a model whose predictions are known."""

import errno
import io
import json
import platform
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from PIL import Image

import compose
import images
import inference
import metrics
import results


@pytest.fixture(scope="module")
def red_model(tmp_path_factory):
    """A .keras model that calls a pixel 'person' when it is red: p = sigmoid(10 R - 5)."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[1].set_weights(
        [np.array([10.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1), np.array([-5.0], np.float32)]
    )
    path = tmp_path_factory.mktemp("model") / "red.keras"
    model.save(path)
    return path


def half_red(height, width, top=False, fraction=0.5):
    """RGB photo whose left (or top) part is pure red and the rest dark blue."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 2] = 90
    if top:
        image[: round(height * fraction)] = (255, 0, 0)
    else:
        image[:, : round(width * fraction)] = (255, 0, 0)
    return image


def write_photos(folder):
    """The awkward real-world formats, each with a red left half (after orientation)."""
    folder.mkdir()
    # 45% red: the edge falls inside a model pixel, so the upsampled alpha ramps.
    rgb = half_red(240, 400, fraction=0.45)
    cv2.imwrite(str(folder / "plain.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    # Sideways phone photo: stored 400 wide x 240 high with the red part on top; EXIF 6
    # says rotate 90 degrees clockwise, which puts red on the right: shown 240 x 400.
    sideways = Image.fromarray(half_red(240, 400, top=True, fraction=0.45))
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(folder / "sideways.jpg", exif=exif, quality=95)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(folder / "gray.png"), gray)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(folder / "rgba.png")
    cv2.imwrite(str(folder / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(rgb).save(folder / "photo.webp", quality=95)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def read_rgba(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def run(*argv):
    return results.main([str(a) for a in argv])


def test_cutouts_of_awkward_photos(tmp_path, red_model, capsys):
    photos = write_photos(tmp_path / "photos")
    out, figure = tmp_path / "cut", tmp_path / "fig.png"
    code = run("--model", red_model, "--out-dir", out, "--figure", figure, photos)
    err = capsys.readouterr().err
    assert code == 1  # one photo failed
    assert "corrupt.jpg" in err and "not an image" in err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["cmyk.png", "deep.png", "gray.png", "photo.png", "plain.png", "rgba.png", "sideways.png"]
    for name in written:
        cut = read_rgba(out / name)
        alpha = cut[..., 3].astype(int)
        if name == "sideways.png":
            assert cut.shape == (400, 240, 4)  # EXIF rotation applied
            person, background = alpha[:, 150:], alpha[:, :120]
        else:
            assert cut.shape == (240, 400, 4)
            person, background = alpha[:, :160], alpha[:, 200:]
        if name == "gray.png":  # read as RGB with R = G = B = 76: p = sigmoid(10 * 0.3 - 5) = 0.12
            assert np.array_equal(cut[..., 0], cut[..., 1]) and alpha.max() <= 31
            continue
        assert person.mean() > 240 and background.mean() < 15, name
        # The guided filter puts the alpha's edge on the photo's: a sharp edge gives a sharp alpha.
        assert np.count_nonzero((alpha > 20) & (alpha < 235)) <= 3 * alpha.shape[0], name
    # The RGB of the cutout is the photo's.
    plain = read_rgba(out / "plain.png")
    assert np.abs(plain[:, :160, :3].astype(int) - (255, 0, 0)).max() < 20
    # Without the guided filter the alpha is the probabilities upsampled: the edge falls inside a
    # model pixel, so it ramps through intermediate values over several photo pixels.
    assert (
        run(
            "--model",
            red_model,
            "--out-dir",
            tmp_path / "plain",
            "--figure",
            tmp_path / "f2.png",
            "--no-guided-filter",
            photos / "plain.jpg",
        )
        == 0
    )
    alpha = read_rgba(tmp_path / "plain" / "plain.png")[..., 3].astype(int)
    assert np.count_nonzero((alpha > 20) & (alpha < 235)) >= 5 * alpha.shape[0]


def test_figure_has_one_row_per_photo(tmp_path, red_model):
    photos = write_photos(tmp_path / "photos")
    figure = tmp_path / "fig.png"
    run("--model", red_model, "--out-dir", tmp_path / "cut", "--figure", figure, photos)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = cv2.imread(str(figure)).shape[:2]
    rows, columns = 7, 3  # seven readable photos: photo | predicted mask | cutout
    assert (height, width) == (round(2.6 * rows * 80), round(2.6 * columns * 80))


def test_hard_mask_background_colour_and_jpeg(tmp_path, red_model):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(half_red(64, 96), cv2.COLOR_RGB2BGR))
    assert (
        run("--model", red_model, "--out-dir", tmp_path / "hard", "--figure", tmp_path / "f1.png", "--hard", photo) == 0
    )
    assert set(np.unique(read_rgba(tmp_path / "hard" / "p.png")[..., 3])) == {0, 255}
    code = run(
        "--model", red_model, "--out-dir", tmp_path / "white", "--figure", tmp_path / "f2.png",
        "--background", "white", "--format", "jpg", photo,
    )  # fmt: skip
    assert code == 0
    out = cv2.cvtColor(cv2.imread(str(tmp_path / "white" / "p.jpg")), cv2.COLOR_BGR2RGB).astype(int)
    assert np.abs(out[:, 60:] - 255).max() < 12  # background replaced by white
    assert np.abs(out[:, :40] - (255, 0, 0)).max() < 40  # the person kept


@pytest.mark.parametrize(
    "background, expected",
    [("#00ff00", (0, 255, 0)), ("0,0,255", (0, 0, 255)), ("other.png", (128, 128, 128)), ("blur", None)],
)
def test_other_backgrounds_replace_the_background(tmp_path, red_model, background, expected):
    # The person (red, left) on a noisy background (right): blur must smooth the noise away.
    photo = half_red(64, 96)
    noise = np.random.default_rng(0).integers(0, 120, (64, 48, 3), dtype=np.uint8)
    noise[..., 0] //= 8  # hardly red: the model's p < 0.02 there
    photo[:, 48:] = noise
    cv2.imwrite(str(tmp_path / "p.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "other.png"), np.full((30, 50, 3), 128, np.uint8))
    if background == "other.png":
        background = str(tmp_path / "other.png")
    args = ["--model", red_model, "--out-dir", tmp_path / "o", "--figure", tmp_path / "f.png"]
    assert run(*args, "--background", background, tmp_path / "p.png") == 0
    out = cv2.imread(str(tmp_path / "o" / "p.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (64, 96, 3)  # composited: no alpha channel left
    out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB).astype(int)
    assert np.abs(out[:, :40] - (255, 0, 0)).max() < 40  # the person kept
    back = out[:, 56:]
    if expected is not None:
        assert np.abs(back - expected).max() <= 6
    else:  # blurred: the noise (std ~35) is smoothed away, its mean kept
        assert back.std(axis=(0, 1)).max() < 12 and abs(back.mean() - noise.mean()) < 15


def test_never_overwrites_without_being_asked(tmp_path, red_model, capsys):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(half_red(64, 96), cv2.COLOR_RGB2BGR))
    args = ["--model", red_model, "--out-dir", tmp_path / "o", "--figure", tmp_path / "f.png", photo]
    assert run(*args) == 0
    (tmp_path / "o" / "p.png").write_bytes(b"mine")
    assert run(*args) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "o" / "p.png").read_bytes() == b"mine"
    assert run(*args, "--overwrite") == 0
    assert read_rgba(tmp_path / "o" / "p.png").shape == (64, 96, 4)


def test_runs_again_and_again_in_one_folder(tmp_path, red_model, monkeypatch):
    """``results.py a.jpg && results.py b.jpg``: nothing is written by default but the cutouts."""
    monkeypatch.chdir(tmp_path)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(name, cv2.cvtColor(half_red(64, 96), cv2.COLOR_RGB2BGR))
    assert run("--model", red_model, "a.jpg") == 0
    assert run("--model", red_model, "b.jpg") == 0
    assert sorted(p.name for p in (tmp_path / "cutouts").iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg", "cutouts"]  # no figure unless asked


def full_disk(monkeypatch):
    """Every file write fails half-way, as on a full disk; returns the list of paths tried."""
    tried = []

    def write_bytes(path, data):
        tried.append(path)
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return tried


@pytest.mark.parametrize(
    "case, out, message",
    [
        ("full disk", "cut", "cannot write {tmp}/cut/a.png: No space left on device"),
        ("a file in the way", "notes.txt/cut", "cannot write {tmp}/notes.txt/cut/: Not a directory"),
    ],
)
def test_a_write_that_fails_stops_with_one_line(tmp_path, red_model, monkeypatch, capsys, case, out, message):
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), cv2.cvtColor(half_red(64, 96), cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("mine")
    tried = full_disk(monkeypatch) if case == "full disk" else []
    photos = [tmp_path / f"{name}.png" for name in "abc"]
    assert run("--model", red_model, "--out-dir", tmp_path / out, *photos) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"results.py: error: {message.format(tmp=tmp_path)}"]
    if case == "full disk":
        assert list((tmp_path / "cut").iterdir()) == []  # no partial cutout, no temporary file
        assert len(tried) < len(photos)  # the run stopped: the next photo would not fit either
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_evaluate_gives_the_hand_computed_metrics(tmp_path, red_model):
    split = tmp_path / "test"
    (split / "images").mkdir(parents=True)
    (split / "masks").mkdir()
    # a: red top half (512 px predicted), true mask the top 24 rows (768 px): TP 512, FN 256.
    # b: red left half (512 px predicted), empty true mask: FP 512.
    a, b = half_red(32, 32, top=True), half_red(32, 32)
    mask_a, mask_b = np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
    mask_a[:24] = 255
    for name, image, mask in (("a", a, mask_a), ("b", b, mask_b)):
        cv2.imwrite(str(split / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(split / "masks" / f"{name}.png"), mask)
    metrics, figure = tmp_path / "m.json", tmp_path / "worst.png"
    assert run("--model", red_model, "--evaluate", split, "--json", metrics, "--figure", figure, "--size", 32) == 0
    got = json.loads(metrics.read_text())
    high, low = 1 / (1 + np.exp(-5.0)), 1 / (1 + np.exp(5.0))  # p for red and for not-red pixels
    assert got["images"] == 2
    assert got["accuracy"] == pytest.approx((2048 - 256 - 512) / 2048)
    assert got["iou"] == pytest.approx(512 / (512 + 256 + 512))
    # seed_iou: soft intersection 512 high + 256 low over the hard union 768 + 512, one batch.
    assert got["seed_iou"] == pytest.approx((512 * high + 256 * low) / 1280, rel=1e-5)
    # The figure shows the worst photos first (b: iou 0, then a: 2/3), four columns.
    height, width = cv2.imread(str(figure)).shape[:2]
    assert (height, width) == (round(2.6 * 2 * 80), round(2.6 * 4 * 80))


def test_bad_models_get_one_line_errors(tmp_path, capsys):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "notes.keras").write_text("not a model")
    inputs = keras.Input((None, None, 3))
    two = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    two.save(tmp_path / "two.keras")
    for model, message in (
        (tmp_path / "missing.keras", "no such file"),
        (tmp_path / "notes.keras", "not a Keras model file"),
        (tmp_path / "two.keras", r"expected images \(batch, height, width, 3\) -> masks"),
    ):
        assert run("--model", model, photo) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err.startswith(f"results.py: error: --model {model}")
        assert __import__("re").search(message, err)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--format", "jpg"], "--format jpg needs --background"),
        (["--mask-only", "--format", "webp"], "--mask-only writes lossless PNG masks"),
        (["--mask-only", "--background", "white"], "--mask-only writes the alpha alone"),
        (["--smooth", "1"], "--smooth must be at least 0 and below 1"),
        (["--smooth", "-0.5"], "--smooth must be at least 0 and below 1 (0: off). Received: -0.5"),  # video.py's
    ],
)
def test_bad_options_get_one_line_errors(tmp_path, red_model, capsys, options, message):
    with pytest.raises(SystemExit) as e:
        run("--model", red_model, *options, tmp_path)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("results.py: error: ") and message in err[-1]


def test_missing_photo(tmp_path, red_model, capsys):
    assert run("--model", red_model, tmp_path / "nope.jpg") == 2
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err


def test_cutout_of_a_large_photo_keeps_its_resolution():
    photo = half_red(3000, 4000)
    prob = np.zeros((128, 128), np.float32)
    prob[:, :64] = 1.0
    cut = compose.cutout(photo, prob)
    assert cut.shape == (3000, 4000, 4) and cut.dtype == np.uint8
    assert cut[:, :1900, 3].min() == 255 and cut[:, 2100:, 3].max() == 0
    assert np.array_equal(cut[:, :1900, :3], photo[:, :1900]) and not cut[:, 2100:].any()  # transparent: (0, 0, 0, 0)
    assert images.thumbnail(photo).shape == (192, 256, 3)


@pytest.mark.parametrize("shape, mode", [((4, 4, 4), "RGBA"), ((7, 5, 3), "RGB"), ((9, 2), "L"), ((1, 1, 4), "RGBA")])
def test_our_png_reads_back_exactly_in_opencv_and_pillow(shape, mode):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    encoded = images.encode(image, ".png")
    pillow = Image.open(io.BytesIO(encoded))
    assert pillow.mode == mode and np.array_equal(np.asarray(pillow), image)
    decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA if shape[2] == 4 else cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, image)


def test_our_png_is_no_larger_than_opencvs_for_a_cutout():
    """A person-shaped alpha over a photo-like image: the file stays within 10% of OpenCV's PNG."""
    photo = serving_like_photo(540, 960)
    alpha = np.zeros((540, 960), np.uint8)
    cv2.ellipse(alpha, (480, 340), (150, 260), 0, 0, 360, 255, -1)
    rgba = np.dstack([photo, cv2.GaussianBlur(alpha, (0, 0), 2)])
    ours = len(images.encode(rgba, ".png"))
    opencv = len(cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1])
    assert ours <= 1.1 * opencv, (ours, opencv)


def serving_like_photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.uniform(30, 220, (6, 8, 3)).astype(np.float32), (width, height), cv2.INTER_CUBIC)
    return np.clip(field + rng.normal(0, 4, field.shape), 0, 255).astype(np.uint8)


ORANGE, BLUE, MAGENTA = (230, 120, 40), (20, 160, 220), (255, 0, 255)


def soft_edge_photo(alpha, seed=0):
    """An orange person (left) over a textured blue background, mixed by ``alpha`` as a camera would."""
    noise = np.random.default_rng(seed).normal(0, 10, (*alpha.shape, 3))
    background = np.clip(np.array(BLUE, np.float32) + noise, 0, 255)
    a = alpha[..., None] / 255.0
    return np.clip(np.array(ORANGE) * a + background * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def on_magenta(colour, alpha):
    """``colour`` (an image or one RGB value) laid over magenta with ``alpha``."""
    a = alpha[..., None] / 255.0
    return np.asarray(colour, np.float32) * a + np.array(MAGENTA) * (1 - a)


def edge_error(composite, alpha):
    """Mean error of a composite on magenta over the soft edge, against the true orange person on magenta."""
    band = (alpha > 0) & (alpha < 255)
    return np.abs(composite - on_magenta(ORANGE, alpha))[band].mean()


def ramp_prob(size=32, left=12, width=3):
    """(size, size) probabilities: 1 on the left, falling to 0 over ``width`` model pixels."""
    prob = np.clip((left + width - np.arange(size)) / width, 0, 1).astype(np.float32)
    return np.broadcast_to(prob, (size, size)).copy()


def test_estimated_foreground_removes_the_old_background_from_the_edge():
    alpha = compose.alpha_map(ramp_prob(), 128, 192)
    photo = soft_edge_photo(alpha)
    refined = compose.estimate_foreground(photo, alpha)
    unrefined_error, refined_error = (edge_error(on_magenta(c, alpha), alpha) for c in (photo, refined))
    assert unrefined_error > 20 and refined_error < 0.5 * unrefined_error
    low, high = compose.SOFT_RANGE
    kept = (alpha < low) | (alpha > high)
    assert np.array_equal(refined[kept], photo[kept])  # only the soft pixels change
    hard = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    assert compose.estimate_foreground(photo, hard) is photo


def reference_foreground(photo, alpha):
    """estimate_foreground as it was before the soft pixels were read by cv2.remap: the means upsampled to full size."""
    soft_mask = cv2.inRange(alpha, *compose.SOFT_RANGE)
    count = cv2.countNonZero(soft_mask)
    if count == 0:
        return photo
    height, width = alpha.shape
    boxes = [k * compose.soft_edge_width(alpha, count) for k in compose.BOXES_IN_EDGE_WIDTHS]
    image = images.thumbnail(photo, compose.FINE_SIDE).astype(np.float32) / 255.0
    a = images.thumbnail(alpha, compose.FINE_SIDE).astype(np.float32) / 255.0

    def local_means(alpha, fg, bg, box):
        a = alpha[..., None]
        mean_a = cv2.blur(alpha, (box, box))[..., None]
        return cv2.blur(fg * a, (box, box)) / (mean_a + 1e-5), cv2.blur(bg * (1 - a), (box, box)) / (1 - mean_a + 1e-5)

    coarse_image, coarse_a = images.thumbnail(image, compose.COARSE_SIDE), images.thumbnail(a, compose.COARSE_SIDE)
    mean_f, mean_b = local_means(
        coarse_a, coarse_image, coarse_image, compose._odd(boxes[0] * coarse_a.shape[1] / width)
    )
    mean_f, mean_b = cv2.resize(mean_f, a.shape[1::-1]), cv2.resize(mean_b, a.shape[1::-1])
    a3 = a[..., None]
    first = np.clip(mean_f * (1 - a3 * a3) + a3 * (image - (1 - a3) * mean_b), 0.0, 1.0)
    mean_f, mean_b = local_means(a, first, mean_b, compose._odd(boxes[1] * a.shape[1] / width))
    index = np.flatnonzero(soft_mask)
    f, b = (np.take(cv2.resize(m, (width, height)).reshape(-1, 3), index, axis=0) for m in (mean_f, mean_b))
    soft = np.take(alpha.reshape(-1), index).astype(np.float32)[:, None] * (1 / 255.0)
    pixels = np.take(photo.reshape(-1, 3), index, axis=0)
    estimate = soft * pixels + 255.0 * ((1 - soft * soft) * f - soft * (1 - soft) * b)
    out = photo.copy()
    out.reshape(-1, 3)[index] = np.clip(estimate + 0.5, 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize("height, width", [(1080, 1920), (601, 803)])
def test_estimated_foreground_matches_the_full_size_reference(height, width):
    """The soft pixels read by cv2.remap give the colours of the means upsampled to full size: one level at most."""
    alpha = np.zeros((height, width), np.uint8)
    cv2.ellipse(alpha, (width // 2, height // 2), (width // 5, height // 3), 0, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), height / 60)  # a soft edge as wide as an upsampled model's
    person, background = serving_like_photo(height, width, seed=1), serving_like_photo(height, width, seed=2)
    a = alpha[..., None] / 255.0
    photo = np.clip(person * a + background * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    ours, reference = compose.estimate_foreground(photo, alpha), reference_foreground(photo, alpha)
    difference = np.abs(ours.astype(int) - reference).max(axis=-1)
    soft = (alpha >= compose.SOFT_RANGE[0]) & (alpha <= compose.SOFT_RANGE[1])
    assert soft.sum() > 0.04 * alpha.size and not difference[~soft].any()
    assert difference.max() <= 1 and np.count_nonzero(difference) <= 1e-3 * soft.sum()
    cut = compose.cutout(photo, np.zeros((32, 32), np.float32), guided=False)  # nothing visible: no colour kept
    assert cut.shape == (height, width, 4) and not cut.any()
    rgba = compose.clean_edges(compose.rgba_of(photo, alpha), alpha)
    assert np.array_equal(rgba[..., :3], ours) and np.array_equal(rgba[..., 3], alpha)


def test_more_soft_pixels_than_one_remap_image_holds_give_the_same_colours(monkeypatch):
    """cv2.remap takes coordinates of under 32,767 pixels a side: past 1024 x 32,766 soft pixels (a
    48-megapixel photo can have them) their rows widen. Here with the limit made small."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (120, 160, 3), np.uint8)
    alpha = rng.integers(compose.SOFT_RANGE[0], compose.SOFT_RANGE[1] + 1, (120, 160), np.uint8)  # all soft
    expected = compose.estimate_foreground(photo, alpha)
    sides, remap = [], cv2.remap

    def recorded(grid, coords, *args, **kwargs):
        sides.append(coords.shape[:2])
        return remap(grid, coords, *args, **kwargs)

    monkeypatch.setattr(cv2, "remap", recorded)
    monkeypatch.setattr(compose, "_REMAP_COLUMNS", 16)
    monkeypatch.setattr(compose, "_REMAP_SIDE", 64)  # 19,200 soft pixels: 1,200 rows of 16, so 64 rows of 305
    assert np.array_equal(compose.estimate_foreground(photo, alpha), expected)
    assert sides and all(rows < 64 and columns == 305 for rows, columns in sides), sides


def test_a_folder_is_cut_out_as_each_photo_alone_would_be(tmp_path):
    # A folder runs two photos at once, each with a share of OpenCV's threads; the pixels must not change.
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(serving_like_photo(270, 480, seed=i)).save(paths[i])

    def predictor(batch):
        return np.stack([ramp_prob(32)] * len(batch))

    predictor.image_size = 32
    threads = cv2.getNumThreads()
    outputs = [tmp_path / f"cut{i}.png" for i in range(3)]
    rows, failures = inference.cut_out_photos(predictor, paths, outputs, compose.cutout, progress=False)
    assert failures == [] and [row["name"] for row in rows] == [p.name for p in paths]
    assert cv2.getNumThreads() == threads  # set back
    for path, output in zip(paths, outputs, strict=True):
        photo = images.read_rgb(path)
        alone = compose.cutout(photo, ramp_prob(32), squashed=images.squash(photo, 32))
        assert 0 < np.count_nonzero(alone[..., 3]) < alone[..., 3].size  # a soft edge to refine
        assert np.array_equal(read_rgba(output), alone), output.name


def test_keep_freed_memory_works_on_glibc():
    assert inference.keep_freed_memory() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


@pytest.fixture
def ramp_predictor(monkeypatch):
    """results.py's model replaced by one that always predicts ramp_prob() at 32x32."""

    class Ramp:
        def __init__(self, model, image_size):
            self.image_size = image_size

        def __call__(self, batch):
            return np.stack([ramp_prob(self.image_size)] * len(batch))

    monkeypatch.setattr(inference, "Predictor", Ramp)


def test_refined_cutouts_masks_and_webp_through_the_command(tmp_path, red_model, ramp_predictor):
    alpha = compose.alpha_map(ramp_prob(), 128, 192)
    cv2.imwrite(str(tmp_path / "p.png"), cv2.cvtColor(soft_edge_photo(alpha), cv2.COLOR_RGB2BGR))
    args = ["--model", red_model, "--size", 32, "--figure", tmp_path / "f.png", "--overwrite", tmp_path / "p.png"]
    errors = {}
    # The colours alone: the alpha left as upsampled, so the true composite is known.
    for name, options in (("refined", ["--no-guided-filter"]), ("unrefined", ["--no-guided-filter", "--no-refine"])):
        assert run(*args, "--out-dir", tmp_path / name, "--background", ",".join(map(str, MAGENTA)), *options) == 0
        composite = cv2.cvtColor(cv2.imread(str(tmp_path / name / "p.png")), cv2.COLOR_BGR2RGB)
        errors[name] = edge_error(composite.astype(np.float32), alpha)
    assert errors["refined"] < 0.5 * errors["unrefined"]

    assert run(*args, "--out-dir", tmp_path / "mask", "--mask-only", "--no-guided-filter") == 0
    mask = cv2.imread(str(tmp_path / "mask" / "p.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and mask.shape == alpha.shape and np.array_equal(mask, alpha)
    assert run(*args, "--out-dir", tmp_path / "guided", "--mask-only") == 0  # the default: the guided alpha
    mask = cv2.imread(str(tmp_path / "guided" / "p.png"), cv2.IMREAD_UNCHANGED)
    photo = images.read_rgb(tmp_path / "p.png")
    assert np.array_equal(mask, compose.guided_alpha(photo, ramp_prob())) and not np.array_equal(mask, alpha)

    for fmt in ("png", "webp"):
        assert run(*args, "--out-dir", tmp_path / "cut", "--format", fmt) == 0
    png, webp = (read_rgba(tmp_path / "cut" / f"p.{fmt}") for fmt in ("png", "webp"))
    assert webp.shape == (128, 192, 4) and np.array_equal(webp[..., 3], mask)  # WebP keeps the alpha exactly
    visible = mask > 0
    assert np.array_equal(webp[visible], png[visible])  # and every visible pixel (lossless)


def test_a_photo_too_wide_for_webp_fails_alone(tmp_path, red_model, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p.png"), cv2.cvtColor(half_red(64, 96), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "wide.png"), cv2.cvtColor(half_red(8, 16400), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert run("--model", red_model, "--out-dir", out, "--figure", tmp_path / "f.png", "--format", "webp", photos) == 1
    err = capsys.readouterr().err
    assert "wide.png" in err and "WebP limit" in err
    assert sorted(p.name for p in out.iterdir()) == ["p.webp"]


# Four Clothing Co-Parsing test photos with their hand-made person masks (tests/data/ccp-test/README.md).
CCP_TEST = Path(__file__).with_name("data") / "ccp-test"
# The shipped model (MODEL.md) scores 0.892 on them (0.890, 0.866, 0.943, 0.867) at full size, the
# one before it 0.873; a model that cuts out nothing scores 0, everything ~0.21 (the person's share
# of the photo), the person upside down ~0.54 and shifted a quarter of the width ~0.09. The bound
# leaves room for another model of about the same quality to replace it.
MIN_SHIPPED_IOU = 0.75


def ccp_masks():
    """{stem: boolean person mask} of tests/data/ccp-test."""
    return {p.stem: images.read_mask(p).astype(bool) for p in images.list_images(CCP_TEST / "masks")}


def test_without_model_the_shipped_model_finds_the_person(tmp_path):
    """``python results.py --mask-only photos/``: the model in models/ (MODEL.md), small enough to ship."""
    assert results.SHIPPED_MODEL.is_file()
    assert results.SHIPPED_MODEL.stat().st_size <= 25 * 2**20  # the bound MODEL.md sets
    masks = ccp_masks()
    assert len(masks) == 4
    assert run("--mask-only", "--out-dir", tmp_path, CCP_TEST / "images") == 0
    scores = {}
    for stem, truth in masks.items():
        alpha = cv2.imread(str(tmp_path / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert alpha.shape == truth.shape and alpha.dtype == np.uint8  # the photo's full size
        scores[stem] = metrics.mask_iou(truth, alpha >= 128)
    assert np.mean(list(scores.values())) >= MIN_SHIPPED_IOU, scores


def test_the_shipped_models_cutout_keeps_the_person_and_drops_the_background(tmp_path):
    """The default RGBA cutout: opaque on the person (away from its outline), about 0 on the background."""
    assert run("--out-dir", tmp_path, CCP_TEST / "images") == 0
    person, background = [], []
    for stem, truth in ccp_masks().items():
        cut = cv2.imread(str(tmp_path / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert cut.shape == (*truth.shape, 4)
        band = np.ones((41, 41), np.uint8)  # 20 pixels, 2% of the photo's diagonal: the outline's band
        inside = cv2.erode(truth.astype(np.uint8), band).astype(bool)
        outside = ~cv2.dilate(truth.astype(np.uint8), band).astype(bool)
        alpha = cut[..., 3].astype(np.float32)
        person.append(np.mean(alpha[inside] >= 128))
        background.append(alpha[outside].mean())
    # The shipped model: 0.98 of the person's pixels at least half opaque (every one above 0), a mean
    # alpha of 2.5 on the background; upside down: 0.79 and 9.2; shifted a quarter of the width: 0.12 and 58.
    assert np.mean(person) >= 0.9, person
    assert np.mean(background) <= 16, background


def test_a_model_of_a_run_folder_runs_at_its_training_size(tmp_path, red_model):
    """best.keras takes any size; results.py uses the size its run trained at (config.json beside it)."""
    model = inference.load_model(red_model)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(red_model.read_bytes())
    assert inference.model_size(model, None, run / "best.keras") == 128  # no config.json: the original's size
    (run / "config.json").write_text(json.dumps({"options": {"image_size": 256}}))
    assert inference.model_size(model, None, run / "best.keras") == 256
    assert inference.model_size(model, 64, run / "best.keras") == 64  # --size wins
