"""Load on serve.py: N clients sending photos for a fixed time, beside results.py over the same photos.

    python -m benchmarks.serve_load                              # the shipped model, 4 clients, 2 minutes
    python -m benchmarks.serve_load --clients 8 --seconds 30 --overload 0
    python -m benchmarks.serve_load --url http://127.0.0.1:7000/ --pid 12345   # a service already running

Prints the processor first (its class decides the speed: native bfloat16 or AVX2 only), then:
  1. results.py's photos per second over a folder of 1920x1080 JPEGs (real photos of people,
     enlarged; benchmarks.results_speed's), what ``python results.py FOLDER`` does once the
     model is loaded (inference.cut_out_photos), before the load and again after it;
  2. the service (``python serve.py`` started here on a free port, or --url): --clients
     clients, each with its own keep-alive connection, POST /cutout the same photos in turn
     for --seconds: photos per second, latency p50 / p99 / max, every answer that was not 200,
     and the service's resident memory sampled every half second (its start, peak, end, and
     the growth over the second half of the run: flat memory grows by about nothing);
  3. an overload (--overload clients at once, more than the queue holds, for a few seconds):
     how many were answered 503 with Retry-After and that no other error came back, then that
     the service still answers.
Ends with the goals: at least 90% of results.py's photos per second, no errors, flat memory.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import hardware
import inference
import results
from benchmarks.results_speed import folder_speed, real_photos

ROOT = Path(__file__).resolve().parents[1]
GOAL_SHARE = 0.9  # of results.py's photos per second


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux's /proc), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024 if found else None


class Sampler(threading.Thread):
    """Samples a process's resident memory every ``every`` seconds until stopped: [(seconds, MB)]."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.done = pid, every, [], threading.Event()
        self.start_time = time.perf_counter()

    def run(self):
        while not self.done.is_set():
            mb = rss_mb(self.pid)
            if mb is not None:
                self.samples.append((time.perf_counter() - self.start_time, mb))
            self.done.wait(self.every)

    def stop(self):
        self.done.set()
        self.join()
        return self.samples


def start_service(model: str, queue_size: int) -> tuple[subprocess.Popen, str]:
    """``python serve.py --model M --port 0`` in its own process: (process, its URL)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), "--model", model, "--port", "0", "--queue", str(queue_size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        found = re.search(r"serving on (http://\S+/)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep draining
            return process, found.group(1)
    raise SystemExit(f"serve.py exited with {process.wait()} before it served")


def post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", "/cutout", body=body, headers={"Content-Type": "image/jpeg"})
    response = connection.getresponse()
    return response.status, response.read()


def clients(url: str, photos: list[bytes], n: int, seconds: float) -> tuple[list[float], dict[int, int], float]:
    """n clients in threads, each posting photos in turn on its own connection until ``seconds`` pass.

    Returns:
        (the latency of every 200 answer in seconds, {status: count} of the others (0: a
        connection error), the wall time the run took).
    """
    parts = urlsplit(url)
    latencies, others, lock = [], {}, threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def client(k: int):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        i = k
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                status, _ = post(connection, photos[i % len(photos)])
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
            took = time.perf_counter() - sent
            with lock:
                if status == 200:
                    latencies.append(took)
                else:
                    others[status] = others.get(status, 0) + 1
            i += n
        connection.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, others, time.perf_counter() - start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def growth_mb(samples: list[tuple[float, float]]) -> float:
    """The resident memory's growth over the second half of the run, in MB, from a line fitted to it."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return 0.0
    times, mbs = [t for t, _ in half], [m for _, m in half]
    slope = statistics.linear_regression(times, mbs).slope
    return slope * (times[-1] - times[0])


def baseline(model_path: str, paths: list[Path], out: Path, runs: int) -> float:
    """results.py's photos per second over the folder (the median of ``runs`` passes)."""
    model = inference.load_model(model_path)
    predictor = inference.Predictor(model, inference.model_size(model, None, model_path))
    out.mkdir(exist_ok=True)
    per_photo = statistics.median(wall for wall, _ in folder_speed(predictor, paths, out, runs))
    return 1 / per_photo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(results.SHIPPED_MODEL), help="a .keras file")
    parser.add_argument("--url", default=None, help="a running service instead of one started here")
    parser.add_argument("--pid", type=int, default=None, help="with --url: its process, for its memory")
    parser.add_argument("--clients", type=int, default=4, help="clients sending at once")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the clients send")
    parser.add_argument("--photos", type=int, default=24, help="1920x1080 photos in the folder")
    parser.add_argument("--runs", type=int, default=3, help="results.py's passes over the folder, before and after")
    parser.add_argument("--queue", type=int, default=16, help="the service's --queue (when started here)")
    parser.add_argument("--overload", type=int, default=40, help="clients at once for the overload (0: none)")
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.serve_load", *(sys.argv[1:] if argv is None else argv)])

    cpu_info = hardware.cpu_info()
    klass = "native bfloat16" if cpu_info.native_bfloat16 else "AVX2 only (no native bfloat16)"
    print(f"benchmark: {command}")
    print(f"processor: {cpu_info.describe()}: {klass}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = real_photos(tmp / "photos", args.photos, 1920, 1080)
        photos = [p.read_bytes() for p in paths]
        before = baseline(args.model, paths, tmp / "out", args.runs)
        print(f"\n1. results.py over {len(paths)} 1920x1080 JPEGs: {before:.2f} photos/s (before the load)")

        process = None
        if args.url:
            url, pid = args.url, args.pid
        else:
            process, url = start_service(args.model, args.queue)
            pid = process.pid
        try:
            clients(url, photos, args.clients, 0.0)  # one photo each: warm
            sampler = Sampler(pid) if pid else None
            if sampler:
                sampler.start()
            latencies, others, wall = clients(url, photos, args.clients, args.seconds)
            samples = sampler.stop() if sampler else []
            rate = len(latencies) / wall
            print(
                f"2. serve.py, {args.clients} clients for {wall:.0f} s: {len(latencies)} cutouts, {rate:.2f} photos/s; "
                f"latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms; errors: {sum(others.values())} {others or ''}"
            )
            if samples:
                mbs = [mb for _, mb in samples]
                quarters = [mbs[min(len(mbs) - 1, len(mbs) * q // 4)] for q in range(1, 5)]
                print(
                    f"   memory (resident, {len(samples)} samples): start {mbs[0]:.0f} MB, peak {max(mbs):.0f} MB, "
                    f"end {mbs[-1]:.0f} MB; at each quarter {' / '.join(f'{m:.0f}' for m in quarters)} MB; "
                    f"second half's growth {growth_mb(samples):+.0f} MB"
                )
            overload = None
            if args.overload:
                burst, burst_others, _ = clients(url, photos, args.overload, 5.0)
                refused = burst_others.pop(503, 0)
                overload = (len(burst), refused, burst_others)
                status, _ = post(http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port), photos[0])
                print(
                    f"3. overload, {args.overload} clients for 5 s: {len(burst)} answered 200, {refused} answered 503, "
                    f"other errors {sum(burst_others.values())} {burst_others or ''}; afterwards a photo gets {status}"
                )
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)
        after = baseline(args.model, paths, tmp / "out", args.runs)
        print(f"   results.py again after the load: {after:.2f} photos/s")

    reference = (before + after) / 2
    share = rate / reference
    flat = not samples or growth_mb(samples) < 0.05 * max(mb for _, mb in samples)
    print(f"\nGoals on this machine ({klass}):")
    print(
        f"  throughput >= {GOAL_SHARE:.0%} of results.py's {reference:.2f} photos/s: {share:.0%}, "
        f"{'met' if share >= GOAL_SHARE else 'NOT met'}"
    )
    print(f"  no errors under load: {'met' if not others else 'NOT met'}")
    print(f"  flat memory: {'met' if flat else 'NOT met'}" + ("" if samples else " (not measured: no --pid)"))
    if overload:
        _, refused, burst_others = overload
        print(f"  overload answered 503, nothing else: {'met' if refused and not burst_others else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
