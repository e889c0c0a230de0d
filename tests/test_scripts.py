"""Every script's command line: no TensorFlow start-up lines in its output, each default once in --help."""

import ast
import importlib
import os
import re
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

import cli
from conftest import ROOT

SCRIPTS = ["train", "results", "export", "model", "data", "coco", "ccp", "photos", "sample", "serve", "webpage"]
BENCHMARKS = [
    "train_speed",
    "export_speed",
    "results_speed",
    "full_size",
    "real_report",
    "edges_figure",
    "check_encoder",
    "training_views",
    "serve_load",
    "page_speed",
]
# The scripts that import TensorFlow quiet it first (test_tensorflow_is_quieted_before_it_is_imported);
# as each TensorFlow start-up costs seconds, train.py and results.py (below) stand for them in a new
# process, and every benchmark is quieted by benchmarks/__init__.py, which runs first: full_size (it
# imports TensorFlow at its top) stands for all. The scripts without TensorFlow all run.
TENSORFLOW_SCRIPTS = ["train", "results", "export", "model", "data", "serve", "webpage"]
COMMANDS = [[f"{name}.py"] for name in SCRIPTS if name not in TENSORFLOW_SCRIPTS[1:]] + [["-m", "benchmarks.full_size"]]

# The three kinds of line TensorFlow's C++ code prints when it is imported (cli.py).
STARTUP_LINES = {
    "absl": r"All log messages before absl::InitializeLog\(\) is called",
    "oneDNN": r"oneDNN custom operations are on",
    "cpu_feature_guard": r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
}


def run(argv, cwd=ROOT, **env):
    """A Python process without the TF_CPP_MIN_LOG_LEVEL that conftest.py sets for the tests (plus ``env``)."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | env
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=environ, timeout=300)


def startup_lines(done: subprocess.CompletedProcess) -> set[str]:
    return {kind for kind, pattern in STARTUP_LINES.items() if re.search(pattern, done.stdout + done.stderr)}


@pytest.fixture(scope="module")
def unquieted():
    """What a bare ``import tensorflow`` prints on this machine (the lines the scripts keep out)."""
    return startup_lines(run(["-c", "import tensorflow"]))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_prints_no_tensorflow_startup_lines(command):
    done = run([*command, "--help"])
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert startup_lines(done) == set(), done.stderr


@pytest.mark.parametrize("name", TENSORFLOW_SCRIPTS)
def test_tensorflow_is_quieted_before_it_is_imported(name):
    """The script's first statements: the standard library, NumPy and cli, then ``cli.quiet_tensorflow()``
    when run as a script, before any module that may import TensorFlow."""
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    found = [
        i
        for i, node in enumerate(tree.body)
        if isinstance(node, ast.If)
        and "cli.quiet_tensorflow()" in ast.unparse(node)
        and "__main__" in ast.unparse(node.test)
    ]
    quiet = found[0] if found else None
    assert quiet is not None, f"{name}.py does not call cli.quiet_tensorflow() when run as a script"
    for node in tree.body[:quiet]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for module in names:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("__future__", "numpy", "cli"), (name, module)
    assert any(isinstance(node, ast.Import | ast.ImportFrom) for node in tree.body[quiet:]), name


def test_a_cutout_prints_no_tensorflow_startup_lines(tmp_path):
    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)).save(tmp_path / "tiny.keras")
    cv2.imwrite(str(tmp_path / "me.jpg"), np.full((40, 30, 3), 200, np.uint8))
    done = run([str(ROOT / "results.py"), "--model", "tiny.keras", "me.jpg"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cutouts" / "me.png").is_file()
    assert startup_lines(done) == set(), done.stderr


def test_a_level_the_user_sets_is_respected(unquieted):
    """TF_CPP_MIN_LOG_LEVEL=0 from the user: every start-up line a bare import prints (all three on
    the CPUs measured, with AVX-512 and AMX; fewer elsewhere)."""
    done = run(["results.py", "--help"], TF_CPP_MIN_LOG_LEVEL="0")
    assert done.returncode == 0
    assert startup_lines(done) == unquieted  # all that TensorFlow prints at level 0


def option_helps(text: str) -> list[str]:
    """Each option's (and positional argument's) entry of a --help, on one line."""
    entries, current = [], None
    for line in text.splitlines():
        if re.match(r"  \S", line):  # argparse indents an entry's first line by two spaces
            current = [line]
            entries.append(current)
        elif current is not None and line.startswith("   "):
            current.append(line)
        else:
            current = None
    return [" ".join(" ".join(entry).split()) for entry in entries]


@pytest.mark.parametrize("module", SCRIPTS + [f"benchmarks.{name}" for name in BENCHMARKS])
def test_help_states_each_default_once(module, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    entries = option_helps(text)
    assert entries, text
    for line in text.splitlines():
        assert line.count("(default:") <= 1, line
    for entry in entries:
        assert entry.count("(default:") <= 1, entry
        assert "(default: None)" not in entry, entry  # says nothing


@pytest.mark.parametrize(
    "names, limit, sep, expected",
    [
        ([], 10, ", ", ""),
        (["a", "b"], 2, ", ", "a, b"),
        (["a", "b", "c", "d"], 2, ", ", "a, b, ... and 2 more"),
        (range(12), None, ",", "0,1,2,3,4,5,6,7,8,9,10,11"),
        (range(12), cli.SHOWN, ",", "0,1,2,3,4,5,6,7,8,9,... and 2 more"),
        (["x", "y", "z"], 1, "\n  ", "x\n  ... and 2 more"),
    ],
)
def test_a_listing_names_the_first_and_counts_the_rest(names, limit, sep, expected):
    assert cli.listing(names, limit, sep) == expected
