"""Every command and Python snippet of README.md, run in order on data generated here.

The README cannot drift from the code: each line of a ```bash block is a script run through
its ``main(argv)``, each ```python block is executed, all in one working folder that holds
what a user would have (a tiny COCO-format release, a tiny Clothing Co-Parsing release, a
folder of their photos and masks, a photo ``me.jpg``, a short video, the shipped model, and
``data-sample`` as ``make demo`` leaves it).
Training commands get tiny overrides appended (argparse: the last value wins), so that they
take seconds, and only the runs a later command uses are trained (``TRAINED_RUNS``; the
Python snippet trains and resumes for real); ``coco.py --sample`` writes a smaller sample. Downloads, installs and the
``make`` targets are the only lines not run (``NOT_RUN``), and each of those must still be
in the README. ``serve.py`` is started as a process of its own, as a user starts it, on a free
port that the ``curl`` lines after it are sent to (its own port may be taken on a shared
machine), and stopped with SIGTERM at the end, which it must survive with exit code 0.
"""

import csv
import functools
import importlib
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import coco
import config
import data
import images
import sample
from test_ccp import write_release
from test_photos import person, smooth_photo
from test_video import write_clip

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON = ".venv/bin/python"
# A line that starts so is not run, and why.
NOT_RUN = {
    "make ": "the make targets: CI runs make test itself; make demo runs the two commands of the sample's block",
    "mkdir -p coco && cd coco": "the COCO download",
    "wget ": "downloads",
    "unzip ": "the COCO download",
    "git clone ": "downloads",
    ".venv/bin/pip install": "installs: CI installs requirements-dev.txt, which holds requirements-export.txt",
    "python3 -m venv": "installs: CI makes the .venv",
}
# Appended to a train.py command (the last value of an option wins): seconds, not hours.
TINY_TRAINING = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--image-size", "64"]
TINY_TRAINING += ["--filter-scale", "0.25", "--validation-steps", "1"]
TINY_RESUME = ["--epochs", "2"]
# The train.py runs that a later command uses, trained for real; the others (and every fit is tested in
# test_train.py) are parsed, checked and given their datasets, which is where a README command drifts.
TRAINED_RUNS = ("mine",)
SAMPLE_PHOTOS = {"num_train": 100, "num_val": 16}  # of the built-in sample's 480 and 120


def snippets() -> list[tuple[str, int, str]]:
    """(language, line number, text) of every ```bash and ```python block, in order."""
    found = []
    for match in re.finditer(r"^```(bash|python)\n(.*?)^```", README.read_text(), re.M | re.S):
        line = README.read_text()[: match.start()].count("\n") + 2
        found.append((match.group(1), line, match.group(2)))
    return found


def commands(text: str) -> list[str]:
    """A bash block's commands: continuation lines joined, blank lines dropped."""
    return [c.strip() for c in text.replace("\\\n", " ").splitlines() if c.strip()]


def write_pairs(photos: Path, masks: Path | None, n: int, invert: bool = False, rgba: bool = False):
    photos.mkdir(parents=True)
    if masks is not None:
        masks.mkdir(parents=True)
    for i in range(n):
        photo, mask = smooth_photo(72, 56, seed=i), person(72, 56) * 255
        if rgba:
            images.write_atomic(photos / f"p{i:02d}.png", images.encode(np.dstack([photo, mask]), ".png"))
            continue
        images.write_atomic(photos / f"p{i:02d}.jpg", images.encode(photo, ".jpg"))
        images.write_atomic(masks / f"p{i:02d}.png", images.encode(255 - mask if invert else mask, ".png"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A user's folder: their data, photos and a video, the repository's shipped model."""
    (tmp_path / "models").symlink_to(ROOT / "models")
    real = sorted((ROOT / "tests" / "data" / "ccp-test" / "images").glob("*.jpg"))
    shutil.copy(real[0], tmp_path / "me.jpg")
    (tmp_path / "photos").mkdir()
    for photo in real:
        shutil.copy(photo, tmp_path / "photos")
    write_clip(tmp_path / "clip.mp4", frames=4)
    sample.write_sample(tmp_path / "coco", seed=1, **SAMPLE_PHOTOS)  # stands for COCO 2017
    write_release(tmp_path / "clothing-co-parsing")
    write_pairs(tmp_path / "my" / "photos", tmp_path / "my" / "masks", 30)
    write_pairs(tmp_path / "my" / "id-photos", tmp_path / "my" / "id-masks", 30, invert=True)
    write_pairs(tmp_path / "my" / "cutouts", None, 30, rgba=True)
    (tmp_path / "my" / "backgrounds").mkdir()
    for i in range(3):
        background = np.random.default_rng(i).integers(0, 255, (90, 120, 3), np.uint8)
        images.write_atomic(tmp_path / "my" / "backgrounds" / f"b{i}.jpg", images.encode(background, ".jpg"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sample, "write_sample", functools.partial(sample.write_sample, **SAMPLE_PHOTOS))
    assert coco.main(["--sample", "--out", "data-sample"]) == 0  # as make demo leaves it
    return tmp_path


class Service:
    """`python serve.py ARGV --port 0` started in the workspace, as the README's line starts it (in the background)."""

    def __init__(self, argv: list[str]):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "serve.py"), *argv, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output, lines = [], queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        while True:
            line = lines.get(timeout=300)
            assert line is not None, "serve.py exited:\n" + "".join(self.output)
            found = re.match(r"serving on http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = found.group(1)
                return

    def _read(self, lines):
        for line in self.process.stdout:
            self.output.append(line)
            lines.put(line)
        lines.put(None)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


@pytest.fixture
def services():
    """The services a README line started; whatever a failed test left running is ended."""
    started = []
    yield started
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


def run_curl(command: str, services: list[Service]) -> None:
    """A curl line against the service started before it, on the port it was given."""
    assert services, f"README.md: {command}: no serve.py line before it"
    argv = [
        arg.replace("localhost:7000", f"localhost:{services[-1].port}") for arg in shlex.split(command, comments=True)
    ]
    done = subprocess.run(argv, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr


def run_command(command: str, services: list[Service]) -> None:
    if command.startswith("curl "):
        run_curl(command, services)
        return
    argv = shlex.split(command, comments=True)
    assert argv[0] == PYTHON, f"README.md: not a {PYTHON} command: {command}"
    if argv[1] == "-m":
        module, argv = argv[2], argv[3:]
    else:
        assert argv[1].endswith(".py"), command
        module, argv = argv[1][: -len(".py")], argv[2:]
    if module == "serve":
        services.append(Service(argv))
        return
    if module == "train":
        argv += TINY_RESUME if "--resume" in argv else TINY_TRAINING
        if not set(argv) & set(TRAINED_RUNS):  # checked up to the first step: the options, the data folders
            options, _, _ = config.parse_args(argv)
            data.for_training(options, 0)
            return
    assert importlib.import_module(module).main(argv) == 0, command


def test_every_readme_snippet_runs(workspace, services):
    skipped = set()
    for language, line, text in snippets():
        if language == "python":
            namespace = {"__name__": f"readme_{line}"}
            exec(compile(text, f"README.md:{line}", "exec"), namespace)
            if "train.resume(" in text:  # trained, then resumed in the same run folder: one history
                summary = namespace["summary"]
                epochs = summary.state["epochs_done"]
                assert epochs == 2 and summary.run_dir.parent == Path("runs"), summary
                with open(summary.run_dir / "history.csv") as f:
                    assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]
            continue
        for command in commands(text):
            reason = next((prefix for prefix in NOT_RUN if command.startswith(prefix)), None)
            if reason:
                skipped.add(reason)
                continue
            run_command(command, services)
    assert skipped == set(NOT_RUN), f"NOT_RUN entries no longer in the README: {set(NOT_RUN) - skipped}"
    # What the commands were run for: the files a user would then look at.
    assert images.read_rgba(workspace / "cutouts" / "me.png")[1] is not None  # the cutout has an alpha
    photos = sorted(p.stem for p in (workspace / "photos").iterdir())
    assert sorted(p.stem for p in (workspace / "masks").glob("*.png")) == photos  # one alpha per photo
    assert (workspace / "cutouts" / "clip.mp4").stat().st_size > 0
    assert (workspace / "runs" / "mine" / "best.keras").exists()
    assert (workspace / "person.onnx").exists() and (workspace / "me-cut.png").exists()
    served, alpha = images.read_rgba(workspace / "me.png")  # curl's, from serve.py: the cutout of me.jpg
    assert alpha is not None and served.shape == images.read_rgb(workspace / "me.jpg").shape
    assert [service.stop() for service in services] == [0]  # SIGTERM: a clean stop, after its summary
    assert "done: 1 cutout(s) served" in "".join(services[0].output)


def test_the_readme_opens_with_the_two_commands_and_stays_short():
    lines = README.read_text().splitlines()
    first = next(text for language, _, text in snippets() if language == "bash")
    assert [c.split("#")[0].strip() for c in commands(first)] == ["make demo", "make test"]
    assert lines.index("```bash") < 3
    assert len(lines) <= 265
