"""An HTTP service that cuts people out of photos: results.py behind an API, and the browser page.

    python serve.py                                   # the shipped model on http://127.0.0.1:7000
    python serve.py --model runs/demo/best.keras --port 8080
    curl -F file=@me.jpg localhost:7000/cutout -o me.png              # = results.py me.jpg
    curl --data-binary @me.jpg 'localhost:7000/cutout?background=blur&format=webp' -o me.webp

Endpoints (the OpenAPI description is at /openapi.json):
  POST /cutout       the photo as the request body, or as the multipart form field ``file``;
                     query options as results.py's: background (a colour or blur), mask_only,
                     format (png, webp, jpg), guided_filter, hard, refine. Returns the image.
  POST /api/remove   rembg's API (multipart ``file``; its ``om`` and ``bgc``), so that clients
                     written for ``rembg s`` work unchanged; it answers as /cutout does.
  GET  /health       the model, the requests in flight, the limits.
  GET  /             the browser page (web/, built by ``make web``), which runs the model itself.

The answer is results.py's for the same photo and options, byte for byte: the same reading
(images.decode_rgb), model (inference.Predictor), render (results.make_render) and encoder.
Requests wait in a bounded queue: the photos are read and squashed, and the cutouts rendered
and encoded, in a pool of threads (one per core), and the model runs on one thread in batches
of whatever photos are waiting. A request beyond the queue gets 503 with Retry-After instead
of memory. Mistakes get their status and one line of JSON, {"error": "..."}: 400 (empty,
truncated or corrupt), 413 (a body over --max-body-mb, a photo over --max-megapixels, read
from its header before it is decoded), 415 (not an image), 422 (an unknown or bad option).
Safer defaults than rembg's: loopback only, no CORS, and no URL is ever fetched. Ctrl-C (or
SIGTERM) stops taking requests and finishes those in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Literal

import numpy as np

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

import compose
import images
import inference
import results

ROOT = Path(__file__).resolve().parent
DEFAULT_PORT = 7000  # rembg's (``rembg s``): its clients find this service where they found rembg
WEB_DIR = ROOT / "web"
# What make web puts in web/ beside the page's own files; without them / says how to build it.
WEB_BUILT = ("model/person.onnx", "ort/ort.wasm.bundle.min.mjs", "ort/ort-wasm-simd-threaded.wasm")
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}
CUTOUT_OPTIONS = ("background", "mask_only", "format", "guided_filter", "hard", "refine")
# rembg's options for POST /api/remove: om (only the mask) and bgc (a background colour) are
# honoured; its model choice and alpha matting have no meaning here and are accepted and ignored.
REMBG_OPTIONS = {"om", "bgc", "model", "a", "af", "ab", "ae", "ppm", "extras"}


class ApiError(Exception):
    """A request that cannot be answered with an image: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------- one photo


def _http_option(name: str, value=None) -> str:
    """An option as a query spells it (results.output_problem's messages): format=webp, mask_only."""
    return name if value is None else f"{name}={value}"


def parse_background(value: str | None):
    """The query's background: None, 'blur' or a colour, as compose.parse_background reads them.

    An image file is never read from the server's disk (a request must not name the server's files).
    """
    if value is not None and Path(value).suffix.lower() in images.IMAGE_EXTENSIONS:
        raise ApiError(
            422, f"background={value}: a colour (white, #00ff00, 0,255,0) or blur; the service reads no files"
        )
    try:
        return compose.parse_background(value)
    except ValueError as e:
        raise ApiError(422, str(e).replace("--background ", "background=")) from None


def render_options(mask_only: bool, fmt: str, background, guided_filter: bool, hard: bool, refine: bool):
    """results.py's render for these options, (full-size photo, prob, squashed) -> image, as its flags would make it."""
    flags = argparse.Namespace(mask_only=mask_only, hard=hard, no_guided_filter=not guided_filter, no_refine=not refine)
    return results.make_render(flags, background)


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the photo's header, before any pixel is decoded (Pillow reads the header only).

    Raises:
        ApiError: 400 for an empty body, 415 for what is not an image.
    """
    if not data:
        raise ApiError(400, "empty body: send the photo as the request body or as the multipart form field 'file'")
    try:
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit (run() silences its warning below that)
        raise ApiError(413, f"the photo is too large ({e})") from None
    except Exception:  # Pillow raises many types for what is not an image; all mean the same here
        raise ApiError(415, "not an image (JPEG, PNG, WebP, BMP or TIFF)") from None


def read_photo(data: bytes, max_pixels: int) -> np.ndarray:
    """The photo as results.py reads it (images.decode_rgb: EXIF applied), once its header's size is checked.

    Raises:
        ApiError: 400 empty, truncated or corrupt; 413 over ``max_pixels``; 415 not an image.
    """
    width, height = header_size(data)
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"the photo is {width}x{height} = {width * height / 1e6:.1f} megapixels, over this service's limit "
            f"of {max_pixels / 1e6:g} (--max-megapixels)",
        )
    try:
        return images.decode_rgb(data, "the photo")
    except images.ImageReadError as e:
        raise ApiError(400, str(e)) from None


def encode(image: np.ndarray, fmt: str) -> bytes:
    """The image as results.py writes it (inference's encoder and quality)."""
    try:
        return images.encode(image, f".{fmt}", quality=inference.JPEG_QUALITY)
    except ValueError as e:  # e.g. a side over WebP's 16,383-pixel limit
        raise ApiError(422, f"format={fmt}: {e}") from None


# ---------------------------------------------------------------------------- the work queue


class Cutter:
    """The service's work: a bounded number of requests admitted, the model run in batches.

    A request is admitted (or refused: ``admit``), its photo read and squashed in the pool,
    its probabilities computed by the model thread with whatever other photos wait
    (``predict``), and its image rendered and encoded in the pool.
    """

    def __init__(self, predictor: inference.Predictor, workers: int, queue_limit: int, batch_size: int):
        self.predictor, self.queue_limit, self.batch_size, self.workers = predictor, queue_limit, batch_size, workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="cutout")
        self.waiting: queue.SimpleQueue = queue.SimpleQueue()  # (squashed, future, loop), or None: stop
        self.model_thread = threading.Thread(target=self._run_model, name="model", daemon=True)
        self.in_flight = 0  # admitted and not yet answered; read and written on the event loop's thread only
        self.served = self.failed = self.refused = 0
        self.seconds_per_photo = 0.2  # a running mean of the time one request takes, for Retry-After

    def start(self) -> None:
        self.model_thread.start()

    def stop(self) -> None:
        self.waiting.put(None)
        self.model_thread.join()
        self.pool.shutdown(wait=True)

    def admit(self) -> None:
        """Counts a request in, or raises ApiError 503 with Retry-After when the queue is full."""
        if self.in_flight >= self.queue_limit:
            self.refused += 1
            wait = max(1, math.ceil(self.in_flight * self.seconds_per_photo / self.workers))
            raise ApiError(
                503,
                f"busy: {self.in_flight} requests in flight (--queue {self.queue_limit}); retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        self.in_flight += 1

    def release(self, seconds: float, ok: bool) -> None:
        self.in_flight -= 1
        if ok:
            self.served += 1
            self.seconds_per_photo = 0.9 * self.seconds_per_photo + 0.1 * seconds
        else:
            self.failed += 1

    async def run(self, fn, *args):
        """fn(*args) in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def predict(self, squashed: np.ndarray) -> np.ndarray:
        """The model's (size, size) probabilities of one squashed photo, computed in a batch with those waiting."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.put((squashed, future, loop))
        return await future

    def _run_model(self) -> None:
        while True:
            first = self.waiting.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < self.batch_size:
                try:
                    item = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                probs = self.predictor(np.stack([squashed for squashed, _, _ in batch]))
                answers = [(future, loop, prob, None) for (_, future, loop), prob in zip(batch, probs, strict=True)]
            except Exception as e:  # e.g. out of memory: each waiting request gets the error, the thread goes on
                answers = [(future, loop, None, e) for _, future, loop in batch]
            for future, loop, prob, error in answers:
                loop.call_soon_threadsafe(_settle, future, prob, error)
            if stop:
                return


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # cancelled: the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# ---------------------------------------------------------------------------- reading a request


async def _limited(request: Request, limit: int):
    """The request's body, chunk by chunk; ApiError 413 as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(
            413,
            f"the body is {int(length) / 1e6:.1f} MB, over this service's limit of {limit / 1e6:g} MB (--max-body-mb)",
        )
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over this service's limit of {limit / 1e6:g} MB (--max-body-mb)")
        yield chunk


async def read_upload(request: Request, limit: int, fields: set[str]) -> tuple[bytes, dict[str, str]]:
    """(the photo's bytes, the form's other fields): the raw body, or a multipart form's field ``file``.

    Raises:
        ApiError: 413 over ``limit``; 400 a malformed form or one without ``file``; 422 a form
            field that is neither ``file`` nor in ``fields``.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return b"".join([chunk async for chunk in _limited(request, limit)]), {}
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=4, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise ApiError(400, f"a malformed multipart form ({e.message})") from None
    try:
        unknown = sorted(set(form) - fields - {"file"})
        if unknown:
            raise ApiError(422, f"unknown form field {unknown[0]!r}: send the photo as 'file', options as the query's")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "no photo: send it as the multipart form field 'file' (a file, not a text field)")
        data = await upload.read()
        return data, {name: value for name, value in form.items() if isinstance(value, str)}
    finally:
        await form.close()


def check_query(request: Request, known) -> None:
    """ApiError 422 for a query parameter that is not an option of this endpoint."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise ApiError(422, f"unknown option {unknown[0]!r}: the options are {', '.join(sorted(known))}")


# ---------------------------------------------------------------------------- the application


def web_is_built(web_dir: Path) -> bool:
    return all((web_dir / name).is_file() for name in WEB_BUILT)


NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Background remover</title>
<p>The page is not built. In the repository run <code>make web</code> (it exports the model to ONNX and
installs ONNX Runtime Web with npm), then start <code>python serve.py</code> again.</p>
<p>The API works without it: <code>curl -F file=@me.jpg {url}cutout -o me.png</code>;
its description is at <a href="openapi.json">openapi.json</a>.</p>
"""

IMAGE_RESPONSES = {
    200: {"content": {media: {} for media in MEDIA_TYPES.values()}, "description": "the cutout, or its mask"},
    **{
        status: {"description": what, "content": {"application/json": {"example": {"error": "..."}}}}
        for status, what in {
            400: "empty, truncated or corrupt",
            413: "a body over --max-body-mb, or a photo over --max-megapixels",
            415: "not an image",
            422: "an unknown or bad option",
            503: "the queue is full: retry after Retry-After seconds",
        }.items()
    },
}
PHOTO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


def make_app(cutter: Cutter, settings: argparse.Namespace, model_name: str) -> FastAPI:
    """The FastAPI application around ``cutter``; ``settings``: serve.py's options (limits, the page's folder)."""
    max_body = int(settings.max_body_mb * 1e6)
    max_pixels = int(settings.max_megapixels * 1e6)
    web_dir = Path(settings.web)

    @asynccontextmanager
    async def lifespan(app):
        cutter.start()
        yield
        cutter.stop()  # after uvicorn has answered the requests in flight

    app = FastAPI(
        title="background-remover",
        summary="Cuts the person out of a photo with the U-net of this repository (results.py's cutouts).",
        version="1",
        docs_url=None,  # FastAPI's documentation pages load their scripts from a CDN: only the description is served
        redoc_url=None,
        lifespan=lifespan,
    )
    if settings.allow_origin:
        app.add_middleware(CORSMiddleware, allow_origins=settings.allow_origin, allow_methods=["GET", "POST"])

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error_response(e.status, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_option(request, e: RequestValidationError):
        first = e.errors()[0]
        name = first["loc"][-1] if first.get("loc") else "option"
        given = f" (got {first['input']!r})" if "input" in first else ""
        return error_response(422, f"{name}: {first['msg']}{given}")

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        return error_response(e.status_code, e.detail, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request, e: Exception):
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return error_response(500, f"internal error: {type(e).__name__}" + (f": {reason[:200]}" if reason else ""))

    async def answer(request: Request, fields: set[str], options) -> Response:
        """Admits the request, reads its photo, cuts it out; ``options(form)`` -> (mask_only, fmt, background, guided, hard, refine)."""
        cutter.admit()
        start, ok = time.perf_counter(), False
        try:
            data, form = await read_upload(request, max_body, fields)
            mask_only, fmt, background, guided, hard, refine = options(form)
            photo = await cutter.run(read_photo, data, max_pixels)
            del data
            squashed = await cutter.run(images.squash, photo, cutter.predictor.image_size)
            prob = await cutter.predict(squashed)
            render = render_options(mask_only, fmt, background, guided, hard, refine)
            body = await cutter.run(lambda: encode(render(photo, prob, squashed=squashed), fmt))
            ok = True
            return Response(body, media_type=MEDIA_TYPES[fmt])
        finally:
            cutter.release(time.perf_counter() - start, ok)

    @app.post("/cutout", responses=IMAGE_RESPONSES, openapi_extra=PHOTO_BODY, summary="Cut the person out of a photo")
    async def cutout(
        request: Request,
        background: str | None = Query(
            None, description="a colour (white, #00ff00, 0,255,0) or blur (default: transparent)"
        ),
        mask_only: bool = Query(False, description="the 8-bit alpha alone (PNG)"),
        format: Literal["png", "webp", "jpg"] = Query(
            "png", description="png, webp (lossless) or jpg (needs background)"
        ),
        guided_filter: bool = Query(True, description="the alpha's edges follow the photo's"),
        hard: bool = Query(False, description="a binary alpha (threshold 0.5)"),
        refine: bool = Query(True, description="the person's own colour in the soft edge"),
    ):
        """The photo as the request body, or as the multipart form field ``file``; what results.py would write for it."""
        check_query(request, CUTOUT_OPTIONS)
        problem = results.output_problem(mask_only, format, background, spell=_http_option)
        if problem:
            raise ApiError(422, problem)
        parsed = parse_background(background)
        return await answer(request, set(), lambda form: (mask_only, format, parsed, guided_filter, hard, refine))

    @app.post("/api/remove", responses=IMAGE_RESPONSES, openapi_extra=PHOTO_BODY, summary="rembg's API")
    async def api_remove(
        request: Request,
        bgc: str | None = Query(None, description="rembg's background colour: R,G,B,A with A = 255"),
    ):
        """rembg's ``POST /api/remove``: the multipart field ``file``, form field ``om`` (only the mask); a PNG."""
        check_query(request, REMBG_OPTIONS)
        background = None
        if bgc is not None:
            parts = bgc.split(",")
            if not (3 <= len(parts) <= 4 and all(p.strip().isdigit() and int(p) <= 255 for p in parts)):
                raise ApiError(422, f"bgc={bgc}: a colour R,G,B,A (0 to 255)")
            if len(parts) == 4 and int(parts[3]) != 255:
                raise ApiError(422, f"bgc={bgc}: only an opaque colour (A = 255)")
            background = tuple(int(p) for p in parts[:3])

        def options(form):
            only_mask = form.get("om", "false").strip().lower() in ("1", "true", "yes", "on")
            if only_mask and background is not None:
                raise ApiError(422, "om=true writes the alpha alone, on no background: drop bgc")
            return only_mask, "png", background, True, False, True

        return await answer(request, REMBG_OPTIONS, options)

    @app.get("/api/remove", include_in_schema=False)
    async def api_remove_url():
        raise ApiError(400, "this service never fetches a URL: POST the photo itself (multipart form field 'file')")

    @app.get("/health", summary="Whether the service is up, and its queue")
    async def health():
        return {
            "status": "ok",
            "model": model_name,
            "input_size": cutter.predictor.image_size,
            "in_flight": cutter.in_flight,
            "queue": cutter.queue_limit,
            "served": cutter.served,
            "max_body_mb": settings.max_body_mb,
            "max_megapixels": settings.max_megapixels,
            "page": web_is_built(web_dir),
        }

    if web_is_built(web_dir):
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="page")
    else:

        @app.get("/", include_in_schema=False)
        async def not_built(request: Request):
            return HTMLResponse(NOT_BUILT.format(url=str(request.base_url)), status_code=404)

    return app


# ---------------------------------------------------------------------------- script


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="serve.py",
        description="An HTTP service that cuts people out of photos (results.py's cutouts) and serves the browser page.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=str(results.SHIPPED_MODEL),
        help="a .keras model file (default: the model shipped with the repository; see MODEL.md)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 every network (no authentication)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the port (0: any free one); rembg's default")
    parser.add_argument("--size", type=int, default=None, help="model input size (default: the model's, as results.py)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="threads that read, render and encode photos (default: one per core)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="at most this many waiting photos per forward pass")
    parser.add_argument(
        "--queue", type=int, default=16, help="requests in flight at most; one more is answered 503 with Retry-After"
    )
    parser.add_argument("--max-body-mb", type=float, default=50.0, help="larger request bodies are answered 413")
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=50.0,
        help="larger photos are answered 413, from their header, before they are decoded",
    )
    parser.add_argument(
        "--web", default=str(WEB_DIR), help="the browser page's folder, served at / once built (default: web/ here)"
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from this origin call the API (CORS), e.g. https://example.org; repeatable (default: none)",
    )
    parser.add_argument(
        "--shutdown-timeout", type=float, default=60.0, help="on Ctrl-C, wait this many seconds for requests in flight"
    )
    parser.add_argument("--access-log", action="store_true", help="print a line per request")
    args = parser.parse_args(argv)
    if min(args.workers, args.batch_size, args.queue) < 1:
        parser.error("--workers, --batch-size and --queue must be at least 1")
    if args.max_body_mb <= 0 or args.max_megapixels <= 0:
        parser.error("--max-body-mb and --max-megapixels must be positive")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a port (0 to 65535)")
    return args


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv4 or IPv6)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address[:2], family=family)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Stop(Exception):
    """SIGTERM, raised again by uvicorn once it has finished the requests in flight."""


def _raise_stop(signum, frame):
    raise _Stop


@contextmanager
def _stopped_by_signals():
    """Ends quietly on Ctrl-C or SIGTERM: uvicorn handles them itself (it stops taking requests and finishes
    those in flight), then raises the signal again for the previous handler, which would print a
    KeyboardInterrupt traceback, or for SIGTERM kill the process before its summary."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stop) if main_thread else None
    try:
        yield
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, ready: Callable | None = None) -> int:
    """Does the work of main(); returns the exit code.

    ``ready(server, url)``, if given, is called once the service listens, before it answers:
    a caller that runs it in a thread (the tests) stops it with ``server.should_exit = True``,
    as Ctrl-C does (a thread gets no signals).
    """
    with listen(args.host, args.port) as sock:  # before the model loads: a port in use fails at once
        model = inference.load_model(args.model)
        size = inference.model_size(model, args.size, args.model)
        predictor = inference.Predictor(model, size)
        predictor(np.zeros((1, size, size, 3), np.uint8))  # traced now, not on the first request
        inference.keep_freed_memory()
        # Pillow warns of a photo over its own pixel limit; --max-megapixels answers it (warnings' filters
        # are the process's: set once here, not per photo in the pool's threads).
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        cutter = Cutter(predictor, args.workers, args.queue, args.batch_size)
        config = uvicorn.Config(
            make_app(cutter, args, Path(args.model).name),
            log_level="warning",
            access_log=args.access_log,
            timeout_graceful_shutdown=args.shutdown_timeout,
            server_header=False,
        )
        server = uvicorn.Server(config)
        host, port = sock.getsockname()[:2]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
        if not is_loopback(args.host):
            print(
                f"note: --host {args.host}: anyone who can reach this machine can use the service (no authentication)"
            )
        page = "the page" if web_is_built(Path(args.web)) else "how to build the page (make web)"
        print(f"serving on {url} (model input {size}x{size}): POST {url}cutout, {page} at /, Ctrl-C stops", flush=True)
        if ready is not None:
            ready(server, url)
        start = time.perf_counter()
        # Each worker renders one photo: OpenCV's own threads beyond a worker's share of the cores only
        # wait for a core (results.py runs two photos on two cores the same way).
        with inference.opencv_threads(max(1, (os.cpu_count() or 1) // args.workers)), _stopped_by_signals():
            server.run(sockets=[sock])
    print(
        f"done: {cutter.served} cutout(s) served, {cutter.failed} refused as bad input or failed, "
        f"{cutter.refused} turned away busy (503), in {time.perf_counter() - start:.0f} s"
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.print_config("serve.py", vars(args))
    try:
        return run(args)
    except (inference.ModelError, OSError) as e:
        cli.error("serve.py", str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
