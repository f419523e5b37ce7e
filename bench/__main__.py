"""`python -m bench`: see bench/cli.py."""

from bench.cli import cli

cli(prog_name="python -m bench")
