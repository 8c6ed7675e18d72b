"""`python -m embrec.cli` runs the `embrec` command."""

from embrec.cli.main import main

main()
