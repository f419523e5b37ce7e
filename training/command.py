"""The command line as typed, recorded with every result a training command writes."""

from __future__ import annotations

import shlex
import sys


def command_line() -> str:
    """`python -m training <arguments>` of the running process."""
    return "python -m training " + " ".join(shlex.quote(a) for a in sys.argv[1:])
