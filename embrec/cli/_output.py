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
from rich.cells import cell_len

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
    write_utf8(real, json.dumps(jsonable(result), indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    return result


def write_utf8(stream: Any, text: str) -> None:
    """Write ``text`` to ``stream`` as UTF-8 bytes whatever the locale says (a C locale would refuse
    non-ASCII ids); a stream without a byte buffer gets the text as it is."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


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
    """A plain aligned text table (numbers right-aligned, 4 decimals). Widths are terminal cells, not
    characters, so wide (CJK) and combining characters keep the columns aligned; line breaks and tabs in
    a cell are shown as spaces."""
    titles = titles or {}
    head = [_cell(titles.get(c, c)) for c in columns]
    cells = [[_cell(fmt(r.get(c))) for c in columns] for r in rows]
    widths = [max([cell_len(h)] + [cell_len(row[i]) for row in cells]) for i, h in enumerate(head)]
    numeric = [all(_is_number(r.get(c)) for r in rows if r.get(c) is not None) and rows for c in columns]

    def pad(v: str, w: int, right: bool) -> str:
        fill = " " * (w - cell_len(v))
        return fill + v if right else v + fill

    def line(vals: Sequence[str]) -> str:
        parts = [pad(v, w, bool(num)) for v, w, num in zip(vals, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def echo_items(items: Sequence[dict[str, Any]], *, label: str = "item") -> None:
    """Rank, raw item id, score (and the item's label, when the model has labels) of a recommendation /
    similar-items list."""
    typer.echo(items_table(items, id_title=label))


def items_table(items: Sequence[dict[str, Any]], *, id_title: str = "item") -> str:
    """The table of ``echo_items``; "(no items)" for an empty list."""
    if not items:
        return "(no items)"
    rows = [{"rank": i + 1, id_title: it["item"], "score": it["score"], "label": it.get("label") or ""}
            for i, it in enumerate(items)]
    labelled = any(it.get("label") for it in items)
    return table(rows, ["rank", id_title, "score", *(["label"] if labelled else [])])


def _cell(text: str) -> str:
    return " ".join(text.split()) if any(c in text for c in "\n\r\t") else text


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
