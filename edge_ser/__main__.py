"""`python -m edge_ser` = the `edge-ser` command."""

from .cli import main

main()
