"""Any interaction log given as a file and column names: CSV, TSV, Parquet or xlsx.

    log = from_file("orders.csv", user_col="customer", item_col="sku", time_col="ts", group_col="order")

The format is chosen by the extension (``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``/``.pq``, ``.xlsx``).
A text file's column separator is ``sep`` when given (``","``, ``";"``, ``"\\t"``, ``"|"``...), else sniffed
from its header line: the most frequent of tab, ``;``, ``,`` and ``|`` (``.tsv``: tab; none found: ``,``).
In CSV/TSV files the id columns are read as text and turned into ints only when every id is a plain
integer without leading zeros, so "00042" stays "00042" and 42 stays 42. Time columns may hold dates
(any format pandas can parse) or unix seconds.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import logging
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from embrec.data import Interactions
from embrec.data.interactions import check_distinct_columns
from embrec.data.timeparse import parse_times
from embrec.datasets.feature_files import Attributes
from embrec.errors import (
    DataError,
    DatasetNotFoundError,
    InvalidParameterError,
    check_choice,
    describe,
)

logger = logging.getLogger(__name__)

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq", ".xlsx")
Duplicates = Literal["error", "drop", "keep"]
_INT_TEXT = r"^(?:0|-?[1-9]\d{0,17})$"


def from_file(
    path: str | Path,
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    time_col: str | None = None,
    group_col: str | None = None,
    time_format: str | None = None,
    duplicates: Duplicates = "keep",
    missing_users: Literal["error", "unknown"] = "error",
    name: str | None = None,
    rating_kind: str = "auto",
    sep: str | None = None,
    item_features: str | Path | None = None,
    item_features_key: str | None = None,
    user_features: str | Path | None = None,
    user_features_key: str | None = None,
    feature_types: Mapping[str, str] | Sequence[str] | None = None,
    multi_sep: str = "|",
    item_label_col: str | None = None,
    encoding: str | None = None,
) -> Interactions:
    """Read an interaction log from ``path`` (see the module docstring).

    ``duplicates`` decides what happens to rows identical in every column used (user, item and the given
    rating/time/group columns): "keep" them (purchases repeat), "drop" all but the first, or raise an
    "error". ``missing_users="unknown"`` maps rows without a user id to the unknown user (row 0).
    Row order is kept; ``name`` defaults to the file name. ``rating_kind`` says what ``rating_col`` holds:
    "rating" (explicit scores), "quantity" (counts bought: rating models skip it) or "auto" (the default:
    ``guess_rating_kind``, logged). ``time_format`` (``strptime`` codes, e.g. ``"%d/%m/%Y %H:%M"``) reads
    every time with that format; without it text times are read by the rules of ``embrec.data.timeparse``
    (dates that could be day-first or month-first are refused, naming two). The column parameters must
    name distinct columns.

    ``item_features`` / ``user_features`` are attribute files (one row per id, keyed by the column named
    like ``item_col`` / ``user_col`` unless ``*_features_key`` says otherwise); every other column becomes
    a feature, typed by ``embrec.datasets.feature_files.infer_types`` (``feature_types`` overrides it:
    ``{"genres": "multi"}`` or ``["genres=multi"]``; ``multi_sep`` splits multi-valued cells). Items that
    have features but no event join the catalogue (content models can recommend them: cold start); users
    without an event are left out. ``item_label_col`` names the items' display label (a title or
    description): a column of the item features file, else of the log (each item's most frequent value).
    ``encoding`` is the text encoding of the log and feature files when they are text (default UTF-8, a
    byte-order mark allowed), e.g. ``"cp1252"`` or ``"latin-1"`` for files saved by older spreadsheets.
    """
    check_choice("rating_kind", rating_kind, ("auto", "rating", "quantity"))
    check_choice("duplicates", duplicates, ("error", "drop", "keep"))
    check_choice("missing_users", missing_users, ("error", "unknown"))
    path = Path(path).expanduser()
    name = name or path.name
    cols = {
        "user_col": user_col,
        "item_col": item_col,
        "rating_col": rating_col,
        "time_col": time_col,
        "group_col": group_col,
    }
    check_distinct_columns(cols)
    if time_format is not None and time_col is None:
        raise DataError(
            f"time_format={describe(time_format)} was given without time_col; name the time column."
        )
    if path.is_dir():
        return _from_dir(
            path,
            cols,
            time_format=time_format,
            duplicates=duplicates,
            missing_users=missing_users,
            name=name,
            rating_kind=rating_kind,
            sep=sep,
            encoding=encoding,
            item_label_col=item_label_col,
            item_features=item_features,
            item_features_key=item_features_key,
            user_features=user_features,
            user_features_key=user_features_key,
            feature_types=feature_types,
            multi_sep=multi_sep,
        )
    frame = read_table(
        path, id_cols=[c for c in (user_col, item_col, group_col) if c], sep=sep, encoding=encoding
    )
    _check_columns(frame, cols, path)
    attrs = Attributes.read(
        item_features=item_features,
        item_key=item_features_key or item_col,
        user_features=user_features,
        user_key=user_features_key or user_col,
        feature_types=feature_types,
        multi_sep=multi_sep,
        encoding=encoding,
    )
    labels = attrs.label_source(item_label_col, frame, item_col, path.name)
    used = [c for c in cols.values() if c is not None]
    frame = frame[list(dict.fromkeys(used))]
    if duplicates != "keep":
        dup = frame.duplicated(keep="first").to_numpy()
        if dup.any() and duplicates == "error":
            first = int(np.flatnonzero(dup)[0])
            row = frame.iloc[first].to_dict()
            raise DataError(
                f"{path.name} must not hold duplicate rows (duplicates='error'); received {int(dup.sum())} "
                f"duplicates, the first at row {first + 1}: {describe(row, 120)}."
            )
        if dup.any():
            logger.info("%s: dropped %d duplicate rows", path.name, int(dup.sum()))
            frame = frame.loc[~dup].reset_index(drop=True)
    if time_col is not None:
        frame[time_col] = _maybe_dates(frame[time_col], time_col, time_format)
    kind = None
    if rating_col is not None:
        kind = rating_kind
        if kind == "auto":
            kind, why = guess_rating_kind(rating_col, frame[rating_col])
            logger.info(
                "%s: rating column %r read as a %s (%s; pass rating_kind= / --rating-kind to say "
                "otherwise)",
                path.name,
                rating_col,
                kind,
                why,
            )
    log = Interactions.from_frame(
        frame,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
        group_col=group_col,
        missing_users=missing_users,
        name=name,
        rating_kind=kind,
        items=attrs.item_vocab(frame[item_col]),
    )
    attrs.attach(log, labels)
    logger.info("loaded %r from %s", log, path)
    return log


def _from_dir(
    path: Path,
    cols: dict[str, str | None],
    *,
    time_format: str | None,
    duplicates: str,
    missing_users: Literal["error", "unknown"],
    name: str,
    rating_kind: str,
    sep: str | None,
    encoding: str | None,
    item_label_col: str | None,
    item_features_key: str | None,
    user_features_key: str | None,
    **attributes: object,
) -> Interactions:
    """``from_file`` of a directory of Parquet files: one streaming pass (``embrec.datasets.parquet_stream``)."""
    from embrec.datasets.parquet_stream import read_parquet_dir

    if duplicates != "keep":
        raise InvalidParameterError(
            f"duplicates={duplicates!r} is not available for a directory of Parquet files "
            f"({path.name}); expected duplicates='keep' (drop duplicates when writing it)."
        )
    for param, value, what in (
        ("sep", sep, "separates the columns of"),
        ("encoding", encoding, "decodes"),
    ):
        if value is not None:
            raise InvalidParameterError(
                f"{param}={describe(value)} {what} a text file; {path.name} is a "
                "directory of Parquet files, which is not text."
            )
    log, stats = read_parquet_dir(
        path,
        cols,
        time_format=time_format,
        missing_users=missing_users,
        name=name,
    )
    if stats is not None:
        kind, why = rating_kind, ""
        if kind == "auto":
            kind, why = guess_rating_kind_from(
                str(cols["rating_col"]), stats.low, stats.high, stats.whole
            )
            logger.info(
                "%s: rating column %r read as a %s (%s; pass rating_kind= / --rating-kind to say "
                "otherwise)",
                path.name,
                cols["rating_col"],
                kind,
                why,
            )
        log.rating_kind = kind
    attrs = Attributes.read(
        item_key=item_features_key or str(cols["item_col"]),
        user_key=user_features_key or str(cols["user_col"]),
        **attributes,
    )  # type: ignore[arg-type]
    labels = None
    if item_label_col is not None:
        if attrs.items is None or item_label_col not in attrs.items.columns:
            raise DataError(
                f"item_label_col={item_label_col[:40]!r} must be a column of the item features file "
                f"when the log is a directory of Parquet files ({path.name})."
            )
        labels = attrs.label_source(
            item_label_col, pd.DataFrame(), str(cols["item_col"]), path.name
        )
    vocab = attrs.item_vocab(pd.Series(log.items.raw_ids))
    if vocab is not None and vocab != log.items:
        log = log.reencode(log.users, vocab)
    attrs.attach(log, labels)
    logger.info("loaded %r from %s", log, path)
    return log


_QUANTITY_NAMES = (
    "qty",
    "quantity",
    "count",
    "amount",
    "units",
    "clicks",
    "plays",
    "views",
    "purchases",
)
_RATING_NAMES = ("rating", "score", "stars", "grade")


def guess_rating_kind(name: str, values: pd.Series) -> tuple[str, str]:
    """("rating" | "quantity", why) for a rating column, by its name, then by its values.

    A name containing qty/quantity/count/amount/units/clicks/plays/views/purchases is a quantity; one
    containing rating/score/stars/grade a rating. Otherwise: whole numbers with a value beyond
    -10..10 are a quantity (counts have long tails: Online Retail's reach 80,995); anything else
    (1-5 stars, half stars, 1-10 scales, continuous scores) is a rating.
    """
    low = str(name).lower()
    if any(w in low for w in _QUANTITY_NAMES):
        return "quantity", f"its name {str(name)[:40]!r} says so"
    if any(w in low for w in _RATING_NAMES):
        return "rating", f"its name {str(name)[:40]!r} says so"
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "rating", "it holds no number"
    return guess_rating_kind_from(
        name, float(v.min()), float(v.max()), bool(np.all(v == np.round(v)))
    )


def guess_rating_kind_from(name: str, lo: float, hi: float, whole: bool) -> tuple[str, str]:
    """``guess_rating_kind`` from the column's name and its values' range and wholeness (a streamed log)."""
    low = str(name).lower()
    if any(w in low for w in _QUANTITY_NAMES):
        return "quantity", f"its name {str(name)[:40]!r} says so"
    if any(w in low for w in _RATING_NAMES):
        return "rating", f"its name {str(name)[:40]!r} says so"
    if not np.isfinite(lo):
        return "rating", "it holds no number"
    if whole and (hi > 10 or lo < -10):
        return "quantity", f"whole numbers from {lo:g} to {hi:g}, beyond a rating scale"
    return (
        "rating",
        f"values from {lo:g} to {hi:g}{' (whole numbers)' if whole else ''}, a rating scale",
    )


def read_table(
    path: str | Path,
    *,
    id_cols: list[str] | tuple[str, ...] = (),
    sep: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """The file as a DataFrame, by extension; ``id_cols`` of text files are read as ids, ``sep``
    separates their columns (None: sniffed; see above) and ``encoding`` decodes them (None: UTF-8, with
    or without a byte-order mark)."""
    path = Path(path).expanduser()
    sep = check_sep(sep)
    encoding = check_encoding(encoding)
    suffix = _suffix(path)
    if suffix not in SUFFIXES:
        raise DataError(f"path must end with one of {', '.join(SUFFIXES)}; received {path.name!r}.")
    if not path.is_file():
        raise DatasetNotFoundError(
            f"path {str(path)!r} does not exist or is not a file; expected a {suffix} file."
        )
    if path.stat().st_size == 0:
        raise DataError(
            f"file {path} is empty; expected a header row and at least one row of interactions."
        )
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix == ".xlsx":
            frame = pd.read_excel(path, engine="openpyxl")
        else:
            sep = sep or sniff_sep(
                path, default="\t" if suffix == ".tsv" else ",", encoding=encoding
            )
            # pandas renames a repeated header name ("user", "user.1") without a word: refuse it instead
            _check_unique_header(
                path,
                pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, encoding=encoding).iloc[
                    0
                ],
            )
            frame = pd.read_csv(path, sep=sep, dtype={c: str for c in id_cols}, encoding=encoding)
            for col in id_cols:
                if col in frame.columns:
                    frame[col] = _text_ids(frame[col])
    except pd.errors.EmptyDataError:
        raise DataError(
            f"file {path} is empty; expected a header row and at least one row of interactions."
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"file {path.name} is not {exc.encoding.upper()} text (byte 0x{exc.object[exc.start]:02x} at "
            f"position {exc.start}); give its encoding with encoding= / --encoding, e.g. 'cp1252' or "
            "'latin-1', or save it as UTF-8."
        ) from None
    except pd.errors.ParserError as exc:
        shown = {"\t": "tab"}.get(str(sep), repr(sep))
        raise DataError(
            f"file {path} could not be read as {suffix} with columns separated by {shown} "
            f"({_first_line(exc)}); give the separator with sep= / --sep."
        ) from None
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"file {path} could not be read as {suffix} ({exc}).") from None
    _check_unique_header(path, frame.columns)
    if frame.empty:
        raise DataError(
            f"file {path} has no rows (columns {list(frame.columns)}); expected at least one interaction."
        )
    return frame


def _check_unique_header(path: Path, names: Iterable[object]) -> None:
    seen: set[str] = set()
    for name in map(str, names):
        if name in seen:
            raise DataError(
                f"file {path.name} names the column {describe(name)} twice in its header; "
                "expected each column name once."
            )
        seen.add(name)


SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_SNIFFED = ("\t", ";", ",", "|")


def check_sep(sep: str | None) -> str | None:
    """A column separator: one character, or a name ("tab", "\\t", "semicolon", "comma", "pipe")."""
    if sep is None:
        return None
    if not isinstance(sep, str) or not sep:
        raise InvalidParameterError(
            f"sep must be one character such as ',', ';' or '\\t' (or 'tab'); received {describe(sep)}."
        )
    sep = SEP_NAMES.get(sep.lower(), sep)
    if len(sep) != 1 or sep in '"\r\n':
        raise InvalidParameterError(
            f"sep must be one character such as ',', ';' or '\\t' (or 'tab'); received {describe(sep)}."
        )
    return sep


def check_encoding(encoding: str | None) -> str:
    """A text encoding Python knows (None: UTF-8, a leading byte-order mark skipped)."""
    if encoding is None:
        return "utf-8-sig"
    try:
        name = codecs.lookup(encoding).name if isinstance(encoding, str) else None
    except LookupError:
        name = None
    if name is None:
        raise InvalidParameterError(
            f"encoding must be a text encoding such as 'utf-8', 'cp1252' or 'latin-1'; received "
            f"{describe(encoding)}."
        )
    return "utf-8-sig" if name == "utf-8" else encoding


def sniff_sep(path: Path, *, default: str = ",", encoding: str = "utf-8") -> str:
    """The most frequent of tab, ';', ',' and '|' in the file's first line (outside quotes); ``default``
    when none of them occurs."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=encoding, errors="replace", newline="") as fh:
            head = fh.readline()
    except OSError:
        return default
    unquoted = "".join(part for i, part in enumerate(head.split('"')) if i % 2 == 0)
    counts = {s: unquoted.count(s) for s in _SNIFFED}
    best = max(_SNIFFED, key=lambda s: (counts[s], s == default))
    return best if counts[best] else default


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".csv.gz" if name.endswith(".csv.gz") else path.suffix.lower()


def _check_columns(frame: pd.DataFrame, cols: dict[str, str | None], path: Path) -> None:
    present = [str(c) for c in frame.columns]
    for param, col in cols.items():
        if col is None or col in frame.columns:
            continue
        close = difflib.get_close_matches(str(col), present, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise DataError(
            f"{param}={col!r} is not a column of {path.name}; its columns are {present}{hint}"
        )


def _text_ids(col: pd.Series) -> pd.Series:
    """Text ids -> int64 when all are plain integers (no leading zeros), else stripped strings."""
    text = col.astype("string").str.strip()
    present = text.dropna()
    if len(present) and present.str.fullmatch(_INT_TEXT).all():
        return text.astype("Int64")  # nullable: missing ids stay missing, big ids stay exact
    return text.astype(object).where(text.notna(), np.nan)


def _maybe_dates(col: pd.Series, name: str, time_format: str | None) -> pd.Series:
    """Text times as datetimes, one format for the whole column (embrec.data.timeparse); datetimes and
    numbers (unix seconds) as they are."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    if pd.api.types.is_numeric_dtype(col):
        if time_format is not None:
            return parse_times(col.astype("Int64").astype("string"), name, time_format=time_format)
        return col
    if time_format is None:
        text = col.dropna().astype(str).str.strip()
        if (
            len(text) and text.str.fullmatch(r"-?\d+(?:\.\d+)?").all()
        ):  # unix seconds too big for int64
            return pd.to_numeric(col, errors="coerce").astype("float64").where(col.notna())
    return parse_times(col, name, time_format=time_format)
