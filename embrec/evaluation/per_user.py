"""Per-user results of a benchmark (``--per-user FILE``): one line per model, fold and resampling unit.

Columns: ``model``, ``fold``, ``user`` (the raw user id; "(anonymous transaction t)" for a retail
transaction without a customer, "(unknown user)" for a user the model does not know), one column per
metric holding that user's own value, and ``weight``: the denominator of the first metric (1 for
per-user means; k x transactions for retail precision@k; events for top-k accuracy; ratings for RMSE).
The protocol's figure on a fold is ``sum(value x weight) / sum(weight)`` over its lines (RMSE: the
square root of that mean of squared values), so the file reproduces the table and lets anyone run
their own paired tests.

Formats by extension: ``.csv`` and ``.jsonl`` are appended and flushed as each model finishes (a header
line starts a new or empty CSV); ``.parquet`` is written once at the end of the run.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embrec.errors import InvalidParameterError
from embrec.evaluation.bootstrap import UnitScores

SUFFIXES = (".csv", ".jsonl", ".parquet")


def per_user_rows(model: str, folds: Sequence[tuple[str, UnitScores]]) -> list[dict[str, Any]]:
    """The lines of one model: ``[{"model", "fold", "user", <metric>..., "weight"}]``."""
    rows: list[dict[str, Any]] = []
    for fold, scores in folds:
        metrics = scores.metrics
        values = {m: scores.values(m) for m in metrics}
        weight = scores.den[metrics[0]]
        for i, unit in enumerate(scores.units):
            row: dict[str, Any] = {"model": model, "fold": fold, "user": str(unit)}
            row.update({m: _num(values[m][i]) for m in metrics})
            row["weight"] = _num(weight[i])
            rows.append(row)
    return rows


class PerUserWriter:
    """Writes ``per_user_rows`` of each model to ``path`` as it comes (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.suffix = self.path.suffix.lower()
        if self.suffix not in SUFFIXES:
            raise InvalidParameterError(
                f"per_user must be a path ending in {', '.join(SUFFIXES)}; received "
                f"{self.path.name[:80]!r}."
            )
        if self.path.is_dir():
            raise InvalidParameterError(
                f"per_user must be a file; received the folder {str(self.path)[:80]!r}."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buffer: list[dict[str, Any]] = []
        self._file = (
            None if self.suffix == ".parquet" else self.path.open("a", encoding="utf-8", newline="")
        )
        self._fields: list[str] | None = None

    def write(self, model: str, folds: Sequence[tuple[str, UnitScores]]) -> None:
        rows = per_user_rows(model, folds)
        if not rows:
            return
        if self.suffix == ".parquet":
            self._buffer += rows
            return
        assert self._file is not None
        if self.suffix == ".jsonl":
            for row in rows:
                self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            fields = list(rows[0])
            if self._fields is None:
                self._fields = fields
                if self.path.stat().st_size == 0:
                    csv.writer(self._file).writerow(fields)
            csv.DictWriter(self._file, fieldnames=self._fields, extrasaction="ignore").writerows(
                rows
            )
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.suffix == ".parquet" and self._buffer:
            import pandas as pd

            pd.DataFrame(self._buffer).to_parquet(self.path, index=False)
            self._buffer = []


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
