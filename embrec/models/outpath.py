"""Output paths that never destroy what is not embrec's: checked before any fitting.

    check_out_path("runs/bpr", inputs=["data/log.csv"], name="--out")      # a model directory
    check_out_path("runs/qs", accept=is_run_dir, what="a quickstart run directory")
    check_out_path("runs/bpr/report", accept=is_report_dir, what="an embrec report directory")

An existing target may be replaced only when ``accept`` says embrec wrote it (by default: an embrec model
directory). Refused, each with one sentence (``OutputPathError``): an empty path; an existing file; a
non-empty directory that is not accepted; the current directory (or one above it) unless accepted; a path
that is or holds one of the command's ``inputs``; a path whose parent is a file or cannot be written.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from embrec.errors import OutputPathError
from embrec.models.store import HOST, PROBE_PREFIX, is_model_dir

RUN_ENTRIES = ("model", "embedding-model", "report")


def is_report_dir(path: str | Path) -> bool:
    """A folder written by ``embrec.report.write_report`` (it holds report.html or summary.json)."""
    path = Path(path)
    return (path / "report.html").is_file() or (path / "summary.json").is_file()


def is_run_dir(path: str | Path) -> bool:
    """A folder written by ``embrec quickstart``: only model/, embedding-model/ (model directories) and report/."""
    path = Path(path)
    entries = {e.name: e for e in path.iterdir()}
    if not entries or not set(entries) <= set(RUN_ENTRIES):
        return False
    return all((is_report_dir(e) if n == "report" else is_model_dir(e)) for n, e in entries.items())


def _show(path: str | Path) -> str:
    text = str(path)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def check_out_path(
    path: str | Path | None,
    *,
    inputs: Iterable[str | Path | None] = (),
    name: str = "out",
    accept: Callable[[Path], bool] = is_model_dir,
    what: str = "an embrec model directory",
) -> Path:
    """Return ``Path(path)`` when writing there destroys nothing that is not embrec's and is possible;
    otherwise raise OutputPathError naming ``name`` (the parameter or option) and the reason."""
    if path is None or not str(path).strip():
        raise OutputPathError(f"{name} must name a directory to write; received an empty path.")
    p = Path(path)
    here = p.resolve()
    for given in inputs:
        if given is None or not str(given).strip():
            continue
        source = Path(given).resolve()
        if source == here or here in source.parents:
            raise OutputPathError(
                f"{name} {_show(p)} holds the command's input {_show(given)}; writing there "
                "could destroy it (give another directory)."
            )
    if os.path.lexists(p):
        if not p.is_dir():
            raise OutputPathError(
                f"{name} {_show(p)} is an existing file, not a directory; refusing to replace "
                "it (give a new or empty directory)."
            )
        if not accept(p):
            cwd = Path.cwd().resolve()
            if here == cwd or here in cwd.parents:
                raise OutputPathError(
                    f"{name} {_show(p)} is the current directory (or one above it), which is "
                    f"not {what}; give a new directory such as runs/model."
                )
            if any(p.iterdir()):
                raise OutputPathError(
                    f"{name} {_show(p)} is a non-empty directory that is not {what}; refusing "
                    "to write into it (give a new or empty directory)."
                )
    _check_writable(p, name)
    return p


def _check_writable(p: Path, name: str) -> None:
    """``p`` (when it exists) must be a directory in which a file can be created (tried with a probe file,
    which the next save removes should the process die in between); else its nearest existing parent must
    be a directory that allows creating entries (``os.access``, so no probe is left in a folder not ours)."""
    probe_dir = p
    while not os.path.lexists(probe_dir):
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputPathError(
            f"{name} {_show(p)} cannot be created: {_show(probe_dir)} is a file, not a directory."
        )
    if probe_dir != p:
        if not os.access(probe_dir, os.W_OK | os.X_OK):
            raise OutputPathError(
                f"{name} {_show(p)} cannot be written: {_show(probe_dir)} does not allow "
                "creating files."
            )
        return
    probe = p / f"{PROBE_PREFIX}{HOST}-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(
            f"{name} {_show(p)} cannot be written: creating a file in it failed "
            f"({exc.strerror or exc})."
        ) from None
