"""What every script prints: one configuration block at the start, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Mapping


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
