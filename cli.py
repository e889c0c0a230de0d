"""What every script prints: one configuration block at the start, one-line errors, no TensorFlow start-up noise."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Mapping

# TensorFlow's C++ start-up lines, which say nothing a user of these scripts can act on:
#   WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
#   I0000 00:00:1796167088.216075   24342 port.cc:153] oneDNN custom operations are on. ...
#   I0000 00:00:1796167088.325440   24342 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...
# TF_CPP_MIN_LOG_LEVEL=1 (no INFO) drops the last, and every later INFO line; no value drops
# the first two (measured with TensorFlow 2.21): two of TensorFlow's libraries log the oneDNN
# line through their own copy of absl while they load, before the level is read. So they are
# filtered out of what the import writes to the standard error.
MIN_LOG_LEVEL = "1"
_STARTUP_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|I\d{4} [\d:. ]+\d+ \S+:\d+\] ")


def quiet_tensorflow() -> None:
    """Imports TensorFlow without its C++ start-up lines, unless the user set TF_CPP_MIN_LOG_LEVEL.

    A script calls it first, before importing a module that imports TensorFlow: the level
    is read, and the lines are written, when TensorFlow is imported. Library modules do not
    call it (importing them has no side effects). A TF_CPP_MIN_LOG_LEVEL the user set is
    left alone, and then TensorFlow prints what that level lets through.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = MIN_LOG_LEVEL
    with stderr_without(_STARTUP_NOISE):
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def stderr_without(noise: re.Pattern):
    """Within it, the lines written to the standard error that ``noise`` matches (at their start) are dropped.

    For C++ libraries' log lines: they write to file descriptor 2, not to sys.stderr, so it is
    captured and the other lines are written out at the end, in order.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not noise.match(line)))
            sys.stderr.flush()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default stated once.

    argparse's ArgumentDefaultsHelpFormatter appends "(default: VALUE)" to every help; this
    one leaves out a help that states its own "(default: ...)" (a default described in
    words, e.g. "the model's, else 128"), and the defaults that say nothing: None (not
    given), False (a flag) and an empty list (no positional arguments).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if "(default:" in help or action.default is False or action.default in (None, [], ()):
            return help
        return super()._get_help_string(action)


SHOWN = 10  # how many names a listing shows before it counts the rest


def listing(names, limit: int | None = SHOWN, sep: str = ", ") -> str:
    """The first ``limit`` names (None: all) joined by ``sep``, the rest counted: 'a, b, ... and 3 more'.

    With ``sep="\\n    "`` a listing of one name a line, indented: its last line is '... and 3 more'.
    """
    names = [str(name) for name in names]
    if limit is None or len(names) <= limit:
        return sep.join(names)
    return sep.join(names[:limit]) + f"{sep}... and {len(names) - limit} more"


def print_config(script: str, options: Mapping) -> None:
    """'SCRIPT configuration:' then one aligned 'name value' line per option."""
    width = max((len(str(key)) for key in options), default=0)
    print(f"{script} configuration:")
    for key, value in options.items():
        print(f"  {key:{width}}  {value}")
    sys.stdout.flush()


def error(script: str, message: str) -> None:
    """One line on standard error: 'SCRIPT: error: MESSAGE' (argparse's form)."""
    print(f"{script}: error: {message}", file=sys.stderr)
