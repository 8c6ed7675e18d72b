"""The ``embrec`` command: a Typer app whose commands are thin wrappers over ``embrec.api``.

Any ``embrec.errors.EmbrecError`` (unknown id, missing file, bad parameter, unknown dataset / model /
protocol) is printed as one sentence on stderr and the command exits 1, never with a traceback.
Usage mistakes caught by the parser itself (a missing option, a non-integer ``-k``) exit 2, as in click.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from embrec.cli import data_cmds, model_cmds, quickstart_cmd, train_cmds, tune_cmd
from embrec.errors import EmbrecError


class EmbrecGroup(TyperGroup):
    """Turns expected errors into ``Error: <one sentence>`` on stderr and exit status 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmbrecError as exc:
            fail(str(exc))
        except OSError as exc:  # e.g. --out in a folder we may not write
            if exc.filename is None:
                raise
            fail(f"cannot use {exc.filename!r}: {exc.strerror or exc}.")


def fail(message: str) -> None:
    """Print one line and exit 1."""
    line = " ".join(str(message).split()) or "unexpected error."
    typer.echo(f"Error: {line}", err=True)
    raise typer.Exit(1)


app = typer.Typer(
    cls=EmbrecGroup,
    name="embrec",
    help="Embedding-based recommendation: train, evaluate, inspect and serve recommenders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only log errors."),
) -> None:
    """Embedding-based recommendation: train, evaluate, inspect and serve recommenders.

    Start with `embrec quickstart` (offline, a synthetic shop). Logs and progress go to stderr;
    `--json` output on stdout is one JSON document.
    """
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    logger = logging.getLogger("embrec")
    logger.setLevel(level)
    for h in [h for h in logger.handlers if getattr(h, "_embrec_cli", False)]:
        logger.removeHandler(h)  # a previous invocation's (in-process runs swap sys.stderr)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._embrec_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


app.command("quickstart")(quickstart_cmd.quickstart)
app.command("datasets")(data_cmds.datasets)
app.command("train")(train_cmds.train)
app.command("evaluate")(train_cmds.evaluate)
app.command("benchmark")(train_cmds.benchmark)
app.command("tune")(tune_cmd.tune)
app.command("recommend")(model_cmds.recommend)
app.command("similar")(model_cmds.similar)
app.command("info")(model_cmds.info)
app.command("inspect")(model_cmds.inspect)
app.command("serve")(model_cmds.serve)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="embrec")


if __name__ == "__main__":
    main()
