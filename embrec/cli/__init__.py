"""The ``embrec`` command line (``embrec --help``)."""

from embrec.cli.main import app, main

__all__ = ["app", "main"]
