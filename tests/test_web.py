"""The browser page (web/, built by webpage.py as make web builds it) in a real headless Chromium.

Debian's chromium, driven by Playwright (its own browser download is not used): the page is
served by a plain static server, which is stopped once the model is loaded; then a photo
chosen with the file input is cut out with the exported ONNX model's alpha (within
serving.ALPHA_TOLERANCE of onnxruntime's in Python), a file dropped on the page that is not an
image gets its message, and a colour, the blurred photo and an uploaded image are laid under the
cutout, as compose.background_image lays them. Without Chromium,
Playwright or onnxruntime-web (npm ci) the test is skipped, unless CI is set: there it fails.
"""

import functools
import http.server
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import compose
import inference
import serving
import webpage

CHROMIUM, CHROMIUM_ARGS = webpage.CHROMIUM, webpage.CHROMIUM_ARGS


def missing() -> str | None:
    """Why the page cannot be tested here, or None."""
    if not CHROMIUM.is_file():
        return f"no {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright (pip install -r requirements-dev.txt)"
    try:
        webpage.check_runtime()
    except FileNotFoundError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def page_dir(small_unet_file, tmp_path_factory):
    """The page built as make web builds it, with the small U-net exported to ONNX."""
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("page")
    model = inference.load_model(small_unet_file)
    webpage.build(model, out)
    return out


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def photo_files(folder: Path):
    """A photo as a PNG (lossless: the browser and OpenCV decode the same pixels), and a text file."""
    photo = serving.sample_photo(301, 187, seed=11)
    cv2.imwrite(str(folder / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return photo, folder / "photo.png"


def download(page, card, selector, path):
    with page.expect_download() as info:
        card.query_selector(selector).click()
    assert info.value.suggested_filename == path.name
    info.value.save_as(path)
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_the_page_cuts_out_with_the_exported_alpha_with_its_server_stopped(page_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(page_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    photo, photo_file = photo_files(tmp_path)
    requested = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{origin}/")
            page.wait_for_selector("#model[data-state=ready], #model[data-state=failed]", timeout=120_000)
            assert page.text_content("#model-status").startswith("Model ready"), page.text_content("#model-status")
            server.shutdown()  # nothing more is fetched: the photos stay in the browser
            server.server_close()
            loaded = len(requested)

            page.set_input_files("#files", str(photo_file))
            dropped = page.evaluate_handle(
                "() => { const d = new DataTransfer(); d.items.add(new File(['no photo'], 'notes.txt')); return d; }"
            )
            page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
            done = page.wait_for_selector(".result[data-state=done]", timeout=120_000)
            failed = page.wait_for_selector(".result[data-state=failed]", timeout=30_000)
            assert done.query_selector(".name").text_content() == "photo.png"
            assert failed.query_selector(".status").text_content() == (
                "notes.txt: not an image this browser can read (or a truncated one)"
            )

            mask = download(page, done, "a.mask", tmp_path / "photo-mask.png")
            cutout = download(page, done, "a.cutout", tmp_path / "photo.png")
            expected = serving.load_exported(page_dir / webpage.MODEL_FILE)(photo)
            assert mask.shape == photo.shape[:2] and expected.std() > 5  # an alpha with edges to get wrong
            assert np.abs(mask.astype(np.int16) - expected).max() <= serving.ALPHA_TOLERANCE
            assert cutout.shape == (*photo.shape[:2], 4) and np.array_equal(cutout[..., 3], mask)
            shown = mask > 0
            assert np.array_equal(cv2.cvtColor(cutout, cv2.COLOR_BGRA2RGB)[shown], photo[shown])

            # New backgrounds, laid as results.py lays them (compose.background_image): the blur and the
            # image's resizing are the page's own, so close to OpenCV's, not equal.
            a = mask[..., None] / 255.0
            backdrop = np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)
            cv2.imwrite(str(tmp_path / "backdrop.png"), cv2.cvtColor(backdrop, cv2.COLOR_RGB2BGR))
            for choose, background, tolerance in [
                (lambda: page.check("input[name=background][value=colour]"), (255, 255, 255), (0.5, 1)),
                (lambda: page.check("input[name=background][value=blur]"), "blur", (1.0, 10)),  # 0.6, 6.4 measured
                (lambda: page.set_input_files("#background-file", str(tmp_path / "backdrop.png")), backdrop, (0.5, 2)),
            ]:
                choose()
                page.wait_for_selector(".result[data-state=done]", timeout=60_000)
                laid = cv2.cvtColor(download(page, done, "a.cutout", tmp_path / "photo.png"), cv2.COLOR_BGR2RGB)
                expected = photo * a + compose.background_image(background, photo) * (1 - a)
                difference = np.abs(laid - expected)
                print(
                    background if isinstance(background, str | tuple) else "image", difference.mean(), difference.max()
                )
                assert difference.mean() <= tolerance[0] and difference.max() <= tolerance[1]
            (tmp_path / "notes.txt").write_text("no photo")
            page.set_input_files("#background-file", str(tmp_path / "notes.txt"))
            page.wait_for_selector("#background-error:has-text('notes.txt: not an image')", timeout=30_000)
            assert done.get_attribute("data-state") == "done"  # the cutouts keep their background
        finally:
            browser.close()
    assert all(url.startswith(f"{origin}/") for url in requested[:loaded]), requested
    assert all(url.startswith(("blob:", "data:")) for url in requested[loaded:]), requested[loaded:]
