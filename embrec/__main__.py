"""`python -m embrec` runs the `embrec` command."""

from embrec.cli.main import main

main()
