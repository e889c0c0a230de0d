"""serve.py through real HTTP on loopback: serve.run in a thread of the test's process, with the small U-net.

Its cutouts are results.py's files byte for byte; every mistake gets its status and one line
of JSON, and the service still cuts out the next photo; a full queue answers 503 with
Retry-After while the requests it admitted finish; stopping finishes the request in flight.
`python serve.py` as a process of its own, stopped by SIGTERM, and curl: tests/test_readme.py.
"""

import http.client
import json
import socket
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest

import images
import inference
import results
import serve
import serving

# Small limits, so that a test can pass them cheaply.
LIMITS = ["--max-body-mb", "1", "--max-megapixels", "2", "--queue", "2"]


class Client:
    """Requests to a service on 127.0.0.1:port."""

    port: int

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def request(self, method, path, body=None, headers=None):
        """(status, response headers, body)."""
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def health(self):
        status, _, body = self.request("GET", "/health")
        assert status == 200
        return json.loads(body)


class ServiceThread(Client):
    """serve.run(ARGS) in a thread of this process (TensorFlow is imported already), stopped as Ctrl-C stops it."""

    def __init__(self, argv):
        started, self.server = threading.Event(), None

        def ready(server, url):
            self.server, self.port = server, int(url.rsplit(":", 1)[1].strip("/"))
            started.set()

        def run():
            try:
                serve.run(serve.parse_args(["--port", "0", *argv]), ready)
            finally:
                started.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(120) and self.server is not None, "serve.run did not start"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=60)


def multipart(data, filename="me.jpg", name="file", **fields):
    """(body, headers) of a multipart form: the file as field ``name``, then text ``fields``."""
    boundary = "test-boundary-5c1f09"
    body = b""
    for key, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
    if data is not None:
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def jpeg(height=240, width=320, seed=0):
    return images.encode(serving.sample_photo(height, width, seed), ".jpg")


@pytest.fixture(scope="module")
def service(small_unet_file, tmp_path_factory):
    """One service for the module, on the small U-net, with small limits and no page built."""
    folder = tmp_path_factory.mktemp("service")
    (folder / "no-page").mkdir()
    running = ServiceThread(["--model", str(small_unet_file), "--web", str(folder / "no-page"), *LIMITS])
    yield running
    running.stop()


def still_cuts_out(service):
    """The service answers a photo after whatever came before."""
    status, headers, body = service.request("POST", "/cutout", jpeg(seed=7), {"Content-Type": "image/jpeg"})
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED).shape == (240, 320, 4)


# (query, results.py's flags for the same cutout, its file's extension)
OPTIONS = {
    "default": ("", [], "png"),
    "blur, webp": ("?background=blur&format=webp", ["--background", "blur", "--format", "webp"], "webp"),
    "mask, unguided": ("?mask_only=true&guided_filter=false", ["--mask-only", "--no-guided-filter"], "png"),
}
PHOTO = jpeg(301, 187, seed=3)


@pytest.fixture(scope="module")
def results_files(small_unet_file, tmp_path_factory):
    """{options: the file results.py writes for PHOTO}: its command line for each, on one loaded model."""
    folder = tmp_path_factory.mktemp("results")
    (folder / "me.jpg").write_bytes(PHOTO)
    model = inference.load_model(small_unet_file)
    predictor = inference.Predictor(model, inference.model_size(model))
    files = {}
    for name, (_, flags, extension) in OPTIONS.items():
        out = folder / name.replace(", ", "-")
        args = results.parse_args(
            ["--model", str(small_unet_file), "--out-dir", str(out), *flags, str(folder / "me.jpg")]
        )
        assert results.cut_out(args, predictor) == 0
        files[name] = (out / f"me.{extension}").read_bytes()
    return files


@pytest.mark.parametrize(
    "how, options",
    [("multipart", "default"), ("body", "blur, webp"), ("body", "mask, unguided"), ("rembg", "default")],
)
def test_a_cutout_is_results_py_s_file_byte_for_byte(how, options, service, results_files):
    query, _, extension = OPTIONS[options]
    if how == "body":
        status, headers, body = service.request("POST", f"/cutout{query}", PHOTO, {"Content-Type": "image/jpeg"})
    else:
        status, headers, body = service.request(
            "POST", "/cutout" if how == "multipart" else "/api/remove", *multipart(PHOTO)
        )
    assert status == 200, body
    assert headers["Content-Type"] == f"image/{extension}"
    assert body == results_files[options]


def test_rembg_s_only_mask_and_background_colour(service):
    photo = jpeg(seed=4)
    _, _, mask = service.request("POST", "/cutout?mask_only=true", photo)
    _, _, on_red = service.request("POST", "/cutout?background=255,0,0", photo)
    status, _, body = service.request("POST", "/api/remove", *multipart(photo, om="true", model="u2net"))
    assert status == 200 and body == mask  # rembg's model choice is accepted and means nothing here
    status, _, body = service.request("POST", "/api/remove?bgc=255,0,0,255", *multipart(photo))
    assert status == 200 and body == on_red


def test_health_the_api_s_description_and_the_unbuilt_page(service):
    health = service.health()
    assert health["status"] == "ok" and health["in_flight"] == 0 and health["queue"] == 2
    assert health["input_size"] == 128 and health["page"] is False
    status, _, body = service.request("GET", "/openapi.json")
    paths = json.loads(body)["paths"]
    assert status == 200 and {"/cutout", "/api/remove", "/health"} <= set(paths)
    assert {p["name"] for p in paths["/cutout"]["post"]["parameters"]} == set(serve.CUTOUT_OPTIONS)
    status, headers, body = service.request("GET", "/")
    assert status == 404 and headers["Content-Type"].startswith("text/html") and b"make web" in body
    assert "Access-Control-Allow-Origin" not in service.request("GET", "/health", headers={"Origin": "http://x.org"})[1]


def png_header_claiming(width, height):
    """A PNG whose header claims width x height gray pixels, followed by a few bytes of deflated zeros:
    a decompression bomb's header (its checksums right, as a forger would write them)."""

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(100_000), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BAD_REQUESTS = {
    "not an image": ("/cutout", b"hello, I am not a photo", {}, 415, "not an image"),
    "truncated": ("/cutout", jpeg()[:3000], {}, 400, "corrupt/truncated"),
    "empty": ("/cutout", b"", {}, 400, "empty body"),
    "body over the limit": ("/cutout", bytes(1_200_000), {}, 413, "over this service's limit of 1 MB"),
    "pixels over the limit": ("/cutout", "bomb", {}, 413, "= 25.0 megapixels, over this service's limit of 2"),
    "a forged header": ("/cutout", png_header_claiming(100_000, 100_000), {}, 413, "too large"),
    "unknown option": ("/cutout?size=512", "photo", {}, 422, "unknown option 'size'"),
    "bad value": ("/cutout?format=gif", "photo", {}, 422, "format:"),
    "mask and webp": ("/cutout?mask_only=true&format=webp", "photo", {}, 422, "drop format=webp"),
    "jpg, no background": ("/cutout?format=jpg", "photo", {}, 422, "format=jpg needs background"),
    "a file as background": ("/cutout?background=/etc/passwd.png", "photo", {}, 422, "reads no files"),
    "bad colour": ("/cutout?background=reddish", "photo", {}, 422, "not a colour"),
    "rembg's bgc": ("/api/remove?bgc=1,2", "form", {}, 422, "bgc=1,2"),
    "no file field": ("/cutout", "form without file", {}, 400, "no photo"),
    "unknown form field": ("/cutout", "form with size", {}, 422, "unknown form field 'size'"),
    "a URL to fetch": ("/api/remove?url=http://127.0.0.1:9/me.jpg", "GET", {}, 400, "never fetches a URL"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_its_status_and_one_line_and_the_service_goes_on(case, service):
    path, body, headers, status, message = BAD_REQUESTS[case]
    method = "POST"
    if body == "photo":
        body = jpeg()
    elif body == "bomb":  # 5000 x 5000 black pixels, deflated: a body under the limit
        body = images.encode_png(np.zeros((5000, 5000), np.uint8))
        assert len(body) < 1_000_000
    elif body == "form":
        body, headers = multipart(jpeg())
    elif body == "form without file":
        body, headers = multipart(None, file="just text")
    elif body == "form with size":
        body, headers = multipart(jpeg(), size="512")
    elif body == "GET":
        method, body = "GET", None
    got, answer_headers, answer = service.request(method, path, body, headers)
    assert got == status, answer
    assert answer_headers["Content-Type"] == "application/json"
    assert answer.count(b"\n") == 0 and list(json.loads(answer)) == ["error"]
    assert message in json.loads(answer)["error"]
    still_cuts_out(service)


def send_part(service, body, share):
    """A request whose headers and first ``share`` of the body are sent: (connection, the rest of the body)."""
    connection = service.connection()
    connection.putrequest("POST", "/cutout")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    cut = int(len(body) * share)
    connection.send(body[:cut])
    return connection, body[cut:]


def wait_for(condition, what, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def finish(connection, rest):
    connection.send(rest)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_a_full_queue_answers_503_with_retry_after_and_the_admitted_finish(service):
    photo = jpeg(seed=5)
    started = [send_part(service, photo, 0.5) for _ in range(2)]  # the queue's 2 places, taken
    wait_for(lambda: service.health()["in_flight"] == 2, "two requests in flight")
    status, headers, body = service.request("POST", "/cutout", photo, {"Content-Type": "image/jpeg"})
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert "busy: 2 requests in flight" in json.loads(body)["error"]
    answers = [finish(*request) for request in started]
    assert [status for status, _ in answers] == [200, 200] and answers[0][1] == answers[1][1]
    assert service.health()["in_flight"] == 0
    still_cuts_out(service)


def test_stopping_stops_taking_requests_and_finishes_the_one_in_flight(small_unet_file):
    """What Ctrl-C and SIGTERM do (uvicorn sets should_exit; tests/test_readme.py sends python serve.py SIGTERM)."""
    running = ServiceThread(["--model", str(small_unet_file)])
    connection, rest = send_part(running, jpeg(seed=6), 0.3)
    wait_for(lambda: running.health()["in_flight"] == 1, "the request in flight")
    running.server.should_exit = True

    def refused():
        try:
            socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, "the service to stop taking connections")
    status, body = finish(connection, rest)
    assert status == 200 and body.startswith(b"\x89PNG")
    running.thread.join(timeout=60)
    assert not running.thread.is_alive()


def test_a_missing_model_or_a_port_in_use_is_one_line(tmp_path, capsys):
    assert serve.main(["--model", str(tmp_path / "none.keras"), "--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == f"serve.py: error: --model {tmp_path / 'none.keras'}: no such file"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert serve.main(["--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err
