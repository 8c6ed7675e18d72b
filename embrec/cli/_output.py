"""How commands print: human tables on stdout by default, or exactly one JSON document with ``--json``.

In JSON mode the command's work runs with ``sys.stdout`` pointed at stderr, so a stray ``print`` in a library
cannot corrupt the document; logs and progress bars go to stderr anyway.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import typer

T = TypeVar("T")


def run(as_json: bool, compute: Callable[[], T], render: Callable[[T], None]) -> T:
    """Compute a result; print it as one JSON document (``as_json``) or through ``render``."""
    if not as_json:
        result = compute()
        render(result)
        return result
    real = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = compute()
    real.write(json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n")
    real.flush()
    return result


def jsonable(x: Any) -> Any:
    """Plain JSON values: numpy -> Python, non-finite floats -> None, paths -> str."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def note(message: str) -> None:
    """A progress line on stderr (never stdout)."""
    typer.echo(message, err=True)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "-"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, titles: dict[str, str] | None = None) -> str:
    """A plain aligned text table (numbers right-aligned, 4 decimals)."""
    titles = titles or {}
    head = [titles.get(c, c) for c in columns]
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(head)]
    numeric = [all(_is_number(r.get(c)) for r in rows if r.get(c) is not None) and rows for c in columns]

    def line(vals: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def echo_items(items: Sequence[dict[str, Any]], *, label: str = "item") -> None:
    """Rank, raw item id and score of a recommendation / similar-items list."""
    rows = [{"rank": i + 1, label: it["item"], "score": it["score"]} for i, it in enumerate(items)]
    typer.echo(table(rows, ["rank", label, "score"]) if rows else "(no items)")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
