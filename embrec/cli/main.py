"""The ``embrec`` command: a Typer app whose commands are thin wrappers over ``embrec.api``.

Any ``embrec.errors.EmbrecError`` (unknown id, missing file, bad parameter, unknown dataset / model /
protocol) is printed as one sentence on stderr and the command exits 1, never with a traceback.
Usage mistakes caught by the parser itself (a missing option, a non-integer ``-k``) exit 2, as in click.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
import typer
from typer.core import TyperCommand, TyperGroup

from embrec import __version__
from embrec.cli import batch_cmds, data_cmds, model_cmds, quickstart_cmd, train_cmds, tune_cmd
from embrec.errors import EmbrecError


def _flags_as_flags(params: list[click.Parameter]) -> list[click.Parameter]:
    """Show on/off options as bare flags in the help (Typer's rich help gives them a ``<bool>`` value
    column, which suggests ``--json true``; a flag takes no value)."""
    for p in params:
        if getattr(p, "is_flag", False) and not getattr(p, "count", False) and p.metavar is None:
            p.metavar = ""
    return params


class EmbrecCommand(TyperCommand):
    """A command whose help shows flags as flags."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _flags_as_flags(super().get_params(ctx))


class EmbrecGroup(TyperGroup):
    """Turns expected errors into ``Error: <one sentence>`` on stderr and exit status 1."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _flags_as_flags(super().get_params(ctx))

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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"embrec {__version__}")
        raise typer.Exit()


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only log errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the embrec version and exit."),
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


app.command("quickstart", cls=EmbrecCommand)(quickstart_cmd.quickstart)
app.command("datasets", cls=EmbrecCommand)(data_cmds.datasets)
app.command("train", cls=EmbrecCommand)(train_cmds.train)
app.command("evaluate", cls=EmbrecCommand)(train_cmds.evaluate)
app.command("benchmark", cls=EmbrecCommand)(train_cmds.benchmark)
app.command("tune", cls=EmbrecCommand)(tune_cmd.tune)
app.command("recommend", cls=EmbrecCommand)(model_cmds.recommend)
app.command("recommend-all", cls=EmbrecCommand)(batch_cmds.recommend_all)
app.command("similar", cls=EmbrecCommand)(model_cmds.similar)
app.command("similar-users", cls=EmbrecCommand)(model_cmds.similar_users)
app.command("info", cls=EmbrecCommand)(model_cmds.info)
app.command("inspect", cls=EmbrecCommand)(model_cmds.inspect)
app.command("serve", cls=EmbrecCommand)(model_cmds.serve)
app.command("export", cls=EmbrecCommand)(model_cmds.export)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="embrec")


if __name__ == "__main__":
    main()
