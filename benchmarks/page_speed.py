"""Speed of the browser page (web/) in headless Chromium on a large photo: what a phone photo costs.

    python -m benchmarks.page_speed                          # the shipped model, a 4000x3000 JPEG (12 MP)
    python -m benchmarks.page_speed --width 1920 --height 1080 --rounds 3
    python -m benchmarks.page_speed --isolated               # COOP/COEP headers: onnxruntime-web on every core

Builds the page as make web does (webpage.build, into a temporary folder; npm ci first),
serves it on loopback, opens it in Debian's Chromium (Playwright, as tests/test_web.py) and
prints, after the processor: the time from opening the page to the model being ready, then
per photo the page's own timings (decode, the model with the guided filter at full size,
composing and encoding the cutout PNG, encoding the mask PNG) and the whole time until its
download links appear, the longest gap between two animation frames of the page while it
worked (the page stays responsive when that stays short: the work is in a Web Worker), and
the peak resident memory of all the browser's processes together.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import hardware
import images
import inference
import results
import serving
import webpage

# Animation frames seen by the page's main thread while it works (a probe added by the benchmark).
FRAME_PROBE = """() => {
  window.frameGaps = [];
  let last = performance.now();
  const tick = (now) => { window.frameGaps.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


class Handler(http.server.SimpleHTTPRequestHandler):
    isolated = False

    def end_headers(self):
        if self.isolated:  # cross-origin isolation: SharedArrayBuffer, so onnxruntime-web may use threads
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args):
        pass


def descendants_rss_mb() -> float:
    """The resident memory of every process descended from this one (the Playwright driver, Chromium's processes)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine, total = {os.getpid()}, 0.0
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    for pid in mine - {os.getpid()}:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(results.SHIPPED_MODEL), help="a .keras file")
    parser.add_argument("--width", type=int, default=4000, help="the photo's width")
    parser.add_argument("--height", type=int, default=3000, help="the photo's height")
    parser.add_argument("--rounds", type=int, default=2, help="photos cut out one after the other")
    parser.add_argument("--isolated", action="store_true", help="serve with COOP/COEP headers (threads)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    cpu_info = hardware.cpu_info()
    klass = "native bfloat16" if cpu_info.native_bfloat16 else "AVX2 only (no native bfloat16)"
    command = " ".join(["python -m benchmarks.page_speed", *(sys.argv[1:] if argv is None else argv)])
    print(f"benchmark: {command}")
    print(f"processor: {cpu_info.describe()}: {klass}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = inference.load_model(args.model)
        webpage.build(model, tmp / "page", inference.model_size(model, None, args.model))
        photo = serving.sample_photo(args.height, args.width, seed=1)
        photo_file = tmp / "photo.jpg"
        images.write_atomic(photo_file, images.encode(photo, ".jpg", quality=90))
        handler = type("Handler", (Handler,), {"isolated": args.isolated})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=tmp / "page"))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        peak = [0.0]
        sampling = threading.Event()

        def sample():
            while not sampling.wait(0.25):
                peak[0] = max(peak[0], descendants_rss_mb())

        threading.Thread(target=sample, daemon=True).start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(webpage.CHROMIUM), args=webpage.CHROMIUM_ARGS)
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("#model[data-state=ready]", timeout=300_000)
            print(
                f"page opened to model ready: {time.perf_counter() - start:.1f} s "
                f"({page.text_content('#model-status')}; model {serving.size_mb(tmp / 'page' / webpage.MODEL_FILE):.1f} MB)"
            )
            page.evaluate(FRAME_PROBE)
            wholes = []
            for round_ in range(args.rounds):
                page.evaluate("() => { window.frameGaps.length = 0; }")
                start = time.perf_counter()
                page.set_input_files("#files", str(photo_file))
                card = page.wait_for_selector(f".result:nth-child({round_ + 1})[data-state=done]", timeout=600_000)
                whole = time.perf_counter() - start
                wholes.append(whole)
                timings = json.loads(card.get_attribute("data-timings"))
                gaps = page.evaluate("() => window.frameGaps")
                print(
                    f"{args.width}x{args.height} JPEG, round {round_ + 1}: {whole:.2f} s until the links appear; "
                    + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
                    + f"; longest frame gap {max(gaps):.0f} ms over {len(gaps)} frames"
                )
            browser.close()
        sampling.set()
        server.shutdown()
    print(f"peak resident memory of the browser's processes: {peak[0]:.0f} MB")
    print(f"median whole time per photo: {statistics.median(wholes):.2f} s ({klass})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
