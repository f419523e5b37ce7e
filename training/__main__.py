"""`python -m training <command>`: see training/README.md."""

from training.cli import main

main()
