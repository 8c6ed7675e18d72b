"""`embrec datasets`: what is known, its licence, and where each was found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embrec import api
from embrec.cli._output import run, table

DATA_DIR = typer.Option(None, "--data-dir", help="Folder holding dataset folders (searched before "
                        "$EMBREC_DATA and ~/.cache/embrec).")
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout instead of a table.")


def datasets(data_dir: Path | None = DATA_DIR, as_json: bool = JSON) -> None:
    """List the named datasets, their licences, and where each was found."""
    def render(rows: list[dict[str, Any]]) -> None:
        shown = [{**r, "where": r["path"] or ("generated" if r["available"] else "not found: downloads on first use")}
                 for r in rows]
        typer.echo(table(shown, ["name", "where", "license"]))

    run(as_json, lambda: api.list_datasets(data_dir), render)
