"""Options that take several values after one flag (`--models a b c`), for the click benchmark commands.

click gives a `multiple=True` option one value per flag (`--models a --models b`); the benchmarks'
documented commands and the commands recorded in bench/results (which `python -m bench all` reruns)
list several values after one flag. `spread` rewrites the first form into the second before click
parses, so both work.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click


def spread(argv: Sequence[str], *names: str) -> list[str]:
    """argv with `NAME v1 v2 ...` rewritten as `NAME v1 NAME v2 ...` for each option in `names`.

    A value is every following argument that is not itself an option (`--x`, or `-h`); negative
    numbers count as values.
    """
    out: list[str] = []
    current: str | None = None
    for arg in argv:
        if arg.startswith("--") or arg == "-h":
            name = arg.split("=", 1)[0]
            current = name if name in names and "=" not in arg else None
            if current is None:
                out.append(arg)
            continue
        if current is not None:
            out += [current, arg]
        else:
            out.append(arg)
    return out


def run(command: click.Command, argv: Sequence[str] | None, prog_name: str, *lists: str) -> int:
    """Run a benchmark's click command like a program and return its exit code (usage errors are
    printed, code 2). `lists`: its options that take several values after one flag (see `spread`).
    The command finds the arguments as given in `click.get_current_context().obj`."""
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        code = command.main(args=spread(given, *lists), prog_name=prog_name, obj=given, standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        return 130
    return code if isinstance(code, int) else 0
