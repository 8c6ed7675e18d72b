"""Interactions: a columnar event log with its user and item vocabularies.

Each event is one row: ``user[i]`` and ``item[i]`` are dense rows of ``users`` / ``items``
(see IdVocab; 0 means "not in the vocabulary", e.g. a retail row without a customer id), with an
optional ``rating`` (a rating or a quantity), ``timestamp`` (datetime64[ns]) and ``group``
(transaction / basket / session id: rows of one group are consecutive). Row order is the log's order.

``rating_kind`` says what the rating column holds: ``"rating"`` (an explicit score, e.g. 1-5 stars:
what rating models learn) or ``"quantity"`` (how many were bought: rating models do not take it as a
rating). It is None without a rating column and defaults to ``"rating"`` with one; datasets declare
theirs (ml-100k ratings; Online Retail and the synthetic shop quantities) and ``from_file`` decides by
``rating_kind=`` or a logged heuristic (``embrec.datasets.files.guess_rating_kind``).

Views models use:

- ``to_csr()``            scipy CSR, users.size x items.size
- ``user_histories()``    Ragged per user row (values + offsets), ordered by time
- ``group_offsets()``     offsets of the consecutive transactions (a Ragged over row positions)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embrec.data.features import FeatureTable
from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import DataError, InvalidParameterError, describe

RATING_KINDS = ("rating", "quantity")


@dataclass
class Interactions:
    user: np.ndarray
    item: np.ndarray
    users: IdVocab
    items: IdVocab
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    group: np.ndarray | None = None
    item_features: FeatureTable | None = None
    user_features: FeatureTable | None = None
    name: str = ""
    rating_kind: str | None = None
    #: (items.size,) display label of every item row (a title or description; "" when unknown, row 0 "")
    item_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.user = np.ascontiguousarray(self.user, dtype=np.int64)
        self.item = np.ascontiguousarray(self.item, dtype=np.int64)
        n = self.user.size
        if self.item_labels is not None:
            self.item_labels = np.asarray(self.item_labels, dtype=object)
            if self.item_labels.shape != (self.items.size,):
                raise DataError(
                    f"item_labels must hold one label per item row ({self.items.size}, row 0 "
                    f"included); received {self.item_labels.shape}."
                )
        for col in ("item", "rating", "timestamp", "group"):
            arr = getattr(self, col)
            if arr is not None and len(arr) != n:
                raise DataError(f"column {col} must have {n} rows like user; received {len(arr)}.")
        if self.rating is not None:
            self.rating = np.ascontiguousarray(self.rating, dtype=np.float32)
            self.rating_kind = self.rating_kind or "rating"
            if self.rating_kind not in RATING_KINDS:
                raise InvalidParameterError(
                    f"rating_kind must be one of {', '.join(RATING_KINDS)}; "
                    f"received {describe(self.rating_kind)}."
                )
        else:
            self.rating_kind = None
        if self.timestamp is not None:
            self.timestamp = np.asarray(self.timestamp).astype("datetime64[ns]", copy=False)
        if self.group is not None:
            self.group = np.ascontiguousarray(self.group, dtype=np.int64)

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str,
        item_col: str,
        rating_col: str | None = None,
        time_col: str | None = None,
        group_col: str | None = None,
        users: IdVocab | None = None,
        items: IdVocab | None = None,
        missing_users: Literal["error", "unknown"] = "error",
        name: str = "",
        rating_kind: str | None = None,
    ) -> Interactions:
        """Build from a DataFrame. Vocabularies are made from the data unless given (then ids outside
        them become 0). ``missing_users="unknown"`` maps a missing user id to row 0 instead of failing."""
        if len(frame) == 0:
            raise DataError(
                f"the interaction table{_named(name)} is empty; expected at least one row."
            )
        cols = {
            "user_col": user_col,
            "item_col": item_col,
            "rating_col": rating_col,
            "time_col": time_col,
            "group_col": group_col,
        }
        check_distinct_columns(cols)
        for param, col in cols.items():
            if col is not None and col not in frame.columns:
                raise DataError(
                    f"{param}={col!r} is not a column of the table{_named(name)}; "
                    f"its columns are {list(frame.columns)}."
                )
        raw_user = frame[user_col]
        raw_item = frame[item_col]
        if raw_item.isna().any():
            raise DataError(
                f"item column {item_col!r} has {int(raw_item.isna().sum())} missing ids; expected an id on every row."
            )
        user_missing = raw_user.isna().to_numpy()
        if user_missing.any() and missing_users == "error":
            raise DataError(
                f"user column {user_col!r} has {int(user_missing.sum())} missing ids; expected an id on every row "
                "(or missing_users='unknown' to map them to the unknown user)."
            )
        raw_user = _normalise_ids(raw_user, user_col)
        raw_item = _normalise_ids(raw_item, item_col)
        users = users or IdVocab.from_values(raw_user[~user_missing], name="user")
        items = items or IdVocab.from_values(raw_item, name="item")
        user = np.zeros(len(frame), dtype=np.int64)
        user[~user_missing] = users.encode(raw_user[~user_missing], unknown="zero")
        item = items.encode(raw_item, unknown="zero")
        rating = None
        if rating_col is not None:
            rating = pd.to_numeric(frame[rating_col], errors="coerce").to_numpy(dtype=np.float32)
            if np.isnan(rating).any():
                raise DataError(
                    f"rating column {rating_col!r} has {int(np.isnan(rating).sum())} missing or non-numeric values."
                )
            if np.isinf(rating).any():  # inf, or a number beyond float32 (1e39)
                raise DataError(
                    f"rating column {rating_col!r} must hold finite numbers; received "
                    f"{int(np.isinf(rating).sum())} infinite (or beyond float32) values."
                )
        timestamp = None
        if time_col is not None:
            timestamp = parse_timestamps(frame[time_col], time_col)
        group = None
        if group_col is not None:
            g = frame[group_col]
            if g.isna().any():
                raise DataError(
                    f"group column {group_col!r} has {int(g.isna().sum())} missing values."
                )
            group = consecutive_group_ids(g.astype(str).to_numpy())
        return cls(
            user, item, users, items, rating, timestamp, group, name=name, rating_kind=rating_kind
        )

    # sizes ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.user.size

    @property
    def n_users(self) -> int:
        return self.users.n_ids

    @property
    def n_items(self) -> int:
        return self.items.n_ids

    def __repr__(self) -> str:
        extras = [c for c in ("rating", "timestamp", "group") if getattr(self, c) is not None]
        return (
            f"Interactions({self.name or 'unnamed'}: {len(self)} events, {self.n_users} users, "
            f"{self.n_items} items, columns={['user', 'item', *extras]})"
        )

    # row selection --------------------------------------------------------------------------
    def subset(self, rows: np.ndarray) -> Interactions:
        """Rows selected by a boolean mask or integer positions; vocabularies and features are shared."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.size != len(self):
            raise InvalidParameterError(
                f"a boolean mask must have {len(self)} entries; received {rows.size}."
            )
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        return replace(
            self,
            user=self.user[rows],
            item=self.item[rows],
            rating=take(self.rating),
            timestamp=take(self.timestamp),
            group=take(self.group),
        )

    def compact(self) -> Interactions:
        """Re-encode with vocabularies of only the users/items present (unknown rows 0 kept as 0)."""
        u_rows = np.unique(self.user[self.user > 0])
        i_rows = np.unique(self.item[self.item > 0])
        users = IdVocab(self.users.raw_ids[u_rows - 1], name=self.users.name)
        items = IdVocab(self.items.raw_ids[i_rows - 1], name=self.items.name)
        return self.reencode(users, items)

    def reencode(self, users: IdVocab, items: IdVocab) -> Interactions:
        """The same events in other vocabularies (e.g. a model's); ids they lack become 0."""
        u_map = np.zeros(self.users.size, dtype=np.int64)
        if self.users.n_ids:
            u_map[1:] = users.encode(self.users.raw_ids, unknown="zero")
        i_map = np.zeros(self.items.size, dtype=np.int64)
        if self.items.n_ids:
            i_map[1:] = items.encode(self.items.raw_ids, unknown="zero")

        def remap(ft: FeatureTable | None, mapping: np.ndarray, size: int) -> FeatureTable | None:
            if ft is None:
                return None
            src = np.zeros(size, dtype=np.int64)  # new row -> old row
            old = np.nonzero(mapping)[0]
            src[mapping[old]] = old
            return ft.take(src)

        labels = None
        if self.item_labels is not None:
            labels = np.full(items.size, "", dtype=object)
            old = np.nonzero(i_map)[0]
            labels[i_map[old]] = self.item_labels[old]
        return replace(
            self,
            user=u_map[self.user],
            item=i_map[self.item],
            users=users,
            items=items,
            item_features=remap(self.item_features, i_map, items.size),
            user_features=remap(self.user_features, u_map, users.size),
            item_labels=labels,
        )

    def sort_by_time(self) -> Interactions:
        """Rows ordered by timestamp (stable: ties keep log order)."""
        self._need("timestamp", "sort_by_time")
        return self.subset(np.argsort(self.timestamp, kind="stable"))

    # views ----------------------------------------------------------------------------------
    def to_csr(self, values: Literal["count", "binary", "rating"] = "count") -> sp.csr_matrix:
        """users.size x items.size matrix (row/col 0 = unknown). Duplicate events add up ('count', 'rating')."""
        if values not in ("count", "binary", "rating"):
            raise InvalidParameterError(
                f"values must be 'count', 'binary' or 'rating'; received {describe(values)}."
            )
        if values == "rating":
            self._need("rating", "to_csr(values='rating')")
            data = self.rating
        else:
            data = np.ones(len(self), dtype=np.float32)
        mat = sp.csr_matrix(
            (data, (self.user, self.item)),
            shape=(self.users.size, self.items.size),
            dtype=np.float32,
        )
        mat.sum_duplicates()
        if values == "binary":
            mat.data[:] = 1.0
        return mat

    def user_histories(self, *, by_time: bool = True) -> Ragged:
        """Items of every user row (users.size rows, row 0 = unknown users), in time (else log) order."""
        # one sort of the rows by (user, time, log position): lexsort is stable, so equal times keep log
        # order; the same rows as a stable sort by time then a stable grouping by user, with one
        # permutation held instead of three (8 bytes an event at the peak, not 40)
        if by_time and self.timestamp is not None:
            order = np.lexsort((self.timestamp.view(np.int64), self.user))
        else:
            order = np.argsort(self.user, kind="stable")
        counts = np.bincount(self.user, minlength=self.users.size)[: self.users.size]
        return Ragged.from_lengths(self.item[order], counts)

    def group_offsets(self) -> np.ndarray:
        """Offsets of consecutive groups: group g is rows offsets[g]:offsets[g+1] (needs ``group``)."""
        self._need("group", "group_offsets")
        change = np.flatnonzero(np.diff(self.group) != 0) + 1
        return np.concatenate([[0], change, [len(self)]]).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """(items.size,) number of events of each item row."""
        return np.bincount(self.item, minlength=self.items.size).astype(np.int64)

    def to_frame(self) -> pd.DataFrame:
        """The log with raw ids."""
        cols: dict[str, Any] = {
            "user": self.users.decode(self.user),
            "item": self.items.decode(self.item),
        }
        for c in ("rating", "timestamp", "group"):
            if getattr(self, c) is not None:
                cols[c] = getattr(self, c)
        return pd.DataFrame(cols)

    def fingerprint(self) -> str:
        """sha256 over the events and vocabularies: identifies the training data in a model's config."""
        h = hashlib.sha256()
        for arr in (self.user, self.item, self.rating, self.timestamp, self.group):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).view(np.uint8))  # the buffer itself: no copy
        h.update(repr((self.users.n_ids, self.items.n_ids)).encode())
        for v in (self.users, self.items):
            h.update("\x1f".join(map(str, v.raw_ids[:1000])).encode())
        return h.hexdigest()

    def _need(self, col: str, what: str) -> None:
        if getattr(self, col) is None:
            raise DataError(
                f"{what} needs the {col} column, which this interaction table{_named(self.name)} lacks."
            )


def parse_timestamps(column: pd.Series, name: str) -> np.ndarray:
    """datetime64[ns] from datetimes, date strings or unix seconds; one clear error for the rest."""
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = pd.to_datetime(column)
    elif pd.api.types.is_numeric_dtype(column):
        ts = pd.to_datetime(column, unit="s", errors="coerce")
    else:
        from embrec.data.timeparse import parse_times

        ts = parse_times(column, name)
    bad = ts.isna().to_numpy() & ~column.isna().to_numpy()
    if bad.any() or column.isna().any():
        example = column[bad].iloc[0] if bad.any() else None
        example = example.item() if isinstance(example, np.generic) else example
        raise DataError(
            f"time column {name!r} must hold dates or unix seconds; received unparseable value {describe(example)} "
            f"({int(bad.sum() + column.isna().sum())} bad rows)."
        )
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert(None)
    return ts.to_numpy(dtype="datetime64[ns]")


def consecutive_group_ids(labels: np.ndarray) -> np.ndarray:
    """0, 0, 1, 1, 1, 2...: a new id whenever the label changes from the previous row."""
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.concatenate([[False], labels[1:] != labels[:-1]])
    return np.cumsum(change).astype(np.int64)


def _normalise_ids(col: pd.Series, name: str) -> np.ndarray:
    """Integral floats (17850.0) become ints; negative numeric ids are refused; else strings."""
    if pd.api.types.is_numeric_dtype(col):
        vals = col.dropna().to_numpy()
        if vals.size and (vals < 0).any():
            raise DataError(
                f"id column {name!r} must hold non-negative ids; received {vals[vals < 0][0].item()!r}."
            )
        if vals.size and np.all(np.mod(vals, 1) == 0):
            return col.fillna(-1).astype(np.int64).to_numpy()
        return col.astype(str).to_numpy(dtype=object)
    if pd.api.types.infer_dtype(col, skipna=True) == "mixed":  # lists, dicts... (or mixed scalars)
        nested = next((v for v in col if isinstance(v, (list, tuple, dict, set, np.ndarray))), None)
        if nested is not None:
            kind = "list" if isinstance(nested, np.ndarray) else type(nested).__name__
            shown = describe(nested.tolist() if isinstance(nested, np.ndarray) else nested)
            raise DataError(
                f"id column {name!r} must hold one id per row (a number or text); received a "
                f"{kind} such as {shown}."
            )
    return col.astype(str).str.strip().to_numpy(dtype=object)


def _named(name: str) -> str:
    return f" {name!r}" if name else ""


def check_distinct_columns(cols: dict[str, str | None]) -> None:
    """The user/item/rating/time/group column parameters name distinct columns."""
    seen: dict[str, str] = {}
    for param, col in cols.items():
        if col is None:
            continue
        if col in seen:
            raise DataError(
                f"{seen[col]} and {param} must name different columns; received {describe(col)} "
                "for both."
            )
        seen[col] = param
