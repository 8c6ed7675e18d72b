"""Item and user attribute files (``--item-features`` / ``--user-features``) as FeatureTables.

    table = read_attributes("movies.csv", key="item", what="item features")
    types = infer_types(table, key="item", multi_sep="|", overrides={"year": "categorical"})
    features = feature_table(table, key="item", vocab=log.items, types=types, multi_sep="|")

A file holds one row per id (CSV/TSV/Parquet/xlsx, read like a log: the separator of a text file is
sniffed from its header). Every column but the key becomes a feature, of the type ``infer_types`` picks
by this procedure, in this order (the first rule that applies wins; ``overrides`` replace it):

1. numbers (every present value parses as a number) or booleans -> ``numeric`` (booleans as 0/1);
2. text where at least 10 % of the present cells hold ``multi_sep`` -> ``multi`` (``A|B|C`` tags,
   genres);
3. text with more distinct values than half its present cells -> ``text`` (titles, descriptions: the
   towers hash their words);
4. other text -> ``categorical`` (brands, categories).

The types an override may name: ``categorical``, ``multi``, ``numeric``, ``text``, or ``ignore`` (drop the
column). A column without any value is left out. The rules look at the file alone, never at a
dataset's name, so the same file gives the same types wherever it is read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embrec.data.features import FeatureTable
from embrec.data.vocab import IdVocab
from embrec.errors import DataError, InvalidParameterError, describe

logger = logging.getLogger(__name__)

FEATURE_TYPES: tuple[str, ...] = ("categorical", "multi", "numeric", "text", "ignore")
_ALIASES = {
    "cat": "categorical",
    "category": "categorical",
    "multi-hot": "multi",
    "multi_hot": "multi",
    "tags": "multi",
    "num": "numeric",
    "number": "numeric",
    "skip": "ignore",
}
#: share of present cells holding the separator from which a text column is multi-valued
MULTI_SHARE = 0.10
#: distinct values / present cells above which a text column is free text rather than a category
TEXT_DISTINCT = 0.5


def feature_type_overrides(types: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """{column: type} from a mapping or ``["col=type", ...]`` (``--feature-type``); types are checked."""
    if types is None:
        return {}
    pairs: dict[str, str] = {}
    if isinstance(types, Mapping):
        pairs = {str(k): v for k, v in types.items()}
    else:
        for item in types:
            col, sep, kind = str(item).partition("=")
            if not sep or not col.strip() or not kind.strip():
                raise InvalidParameterError(
                    f"a feature type must be written column=type (e.g. genres=multi); "
                    f"received {describe(item)}."
                )
            pairs[col.strip()] = kind.strip()
    out = {}
    for col, kind in pairs.items():
        name = _ALIASES.get(str(kind).lower(), str(kind).lower())
        if name not in FEATURE_TYPES:
            raise InvalidParameterError(
                f"the type of feature column {col[:40]!r} must be one of "
                f"{', '.join(FEATURE_TYPES)}; received {describe(kind)}."
            )
        out[col] = name
    return out


def read_attributes(
    path: str | Path, *, key: str, what: str, sep: str | None = None, encoding: str | None = None
) -> pd.DataFrame:
    """The attribute file with its ``key`` column as ids (rows without a key dropped, duplicate keys: the
    first row kept, both with a warning)."""
    from embrec.datasets.files import read_table

    frame = read_table(path, id_cols=[key], sep=sep, encoding=encoding)
    if key not in frame.columns:
        raise DataError(
            f"the {what} file {Path(path).name!r} has no id column {key!r}; its columns are "
            f"{[str(c) for c in frame.columns][:20]} (name the id column with the --*-features-key "
            "option)."
        )
    missing = frame[key].isna().to_numpy()
    if missing.any():
        logger.warning(
            "%s: %d rows without a %r id are left out", Path(path).name, int(missing.sum()), key
        )
        frame = frame.loc[~missing]
    dup = frame[key].duplicated(keep="first").to_numpy()
    if dup.any():
        logger.warning(
            "%s: %d rows repeat an id already given; the first row of each id is kept",
            Path(path).name,
            int(dup.sum()),
        )
        frame = frame.loc[~dup]
    return frame.reset_index(drop=True)


def infer_types(
    frame: pd.DataFrame,
    *,
    key: str,
    multi_sep: str = "|",
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """{column: type} for every column but ``key`` (see the module docstring); overrides win."""
    overrides = dict(overrides or {})
    unknown = [c for c in overrides if c not in frame.columns or c == key]
    if unknown:
        cols = [str(c) for c in frame.columns if c != key]
        raise InvalidParameterError(
            f"feature type given for {unknown[0][:40]!r}, which is not a feature column "
            f"of the file; its feature columns are {cols[:20]}."
        )
    out: dict[str, str] = {}
    for col in frame.columns:
        if col == key:
            continue
        present = frame[col].dropna()
        if col in overrides:
            out[str(col)] = overrides[col]
        elif present.empty:
            logger.info("feature column %r has no value: left out", col)
        else:
            out[str(col)] = _infer_one(present, multi_sep)
    return {c: t for c, t in out.items() if t != "ignore"}


def _infer_one(present: pd.Series, multi_sep: str) -> str:
    if pd.api.types.is_bool_dtype(present) or pd.api.types.is_numeric_dtype(present):
        return "numeric"
    text = present.astype(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return "categorical"
    if pd.to_numeric(text, errors="coerce").notna().all():
        return "numeric"
    if text.str.contains(multi_sep, regex=False).mean() >= MULTI_SHARE:
        return "multi"
    if text.nunique() > TEXT_DISTINCT * len(text):
        return "text"
    return "categorical"


def feature_table(
    frame: pd.DataFrame, *, key: str, vocab: IdVocab, types: Mapping[str, str], multi_sep: str = "|"
) -> FeatureTable:
    """A FeatureTable row-aligned with ``vocab`` from one row per id (ids outside it are dropped)."""
    frame = frame.copy()
    frame[key] = _as_vocab_ids(frame[key], vocab)
    numeric = [c for c, t in types.items() if t == "numeric"]
    for col in numeric:
        values = frame[col]
        if pd.api.types.is_bool_dtype(values):
            frame[col] = values.astype(np.float32)
        else:
            parsed = pd.to_numeric(values, errors="coerce")
            bad = parsed.isna() & values.notna()
            if bad.any():
                raise DataError(
                    f"feature column {col[:40]!r} must hold numbers (numeric); received "
                    f"{describe(values[bad].iloc[0])} ({int(bad.sum())} such rows; give it another "
                    "type with --feature-type)."
                )
            frame[col] = parsed
    text_like = [c for c, t in types.items() if t in ("categorical", "text", "multi")]
    # numbers read as categories keep their written form ("1995", not "1995.0")
    for col in text_like:
        frame[col] = frame[col].map(_cell_text, na_action="ignore")
    return FeatureTable.from_frame(
        frame,
        id_col=key,
        vocab=vocab,
        categorical=[c for c, t in types.items() if t == "categorical"],
        multi_hot={c: multi_sep for c, t in types.items() if t == "multi"},
        numeric=numeric,
        text=[c for c, t in types.items() if t == "text"],
    )


def labels_for(vocab: IdVocab, ids: pd.Series, values: pd.Series) -> np.ndarray:
    """(vocab.size,) object array of labels: per id its most frequent non-empty value (ties: the first
    written), "" for ids without one (and for the padding row 0)."""
    text = values.map(_cell_text, na_action="ignore").astype("string").str.strip()
    keep = text.notna() & (text != "")
    frame = pd.DataFrame(
        {"id": _as_vocab_ids(ids, vocab)[keep.to_numpy()], "label": text[keep].astype(str)}
    )
    out = np.full(vocab.size, "", dtype=object)
    if frame.empty:
        return out
    counts = frame.groupby(["id", "label"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("id")
    rows = vocab.encode(counts["id"].to_numpy(), unknown="zero")
    out[rows[rows > 0]] = counts["label"].to_numpy(dtype=object)[rows > 0]
    out[0] = ""
    return out


def _as_vocab_ids(ids: pd.Series, vocab: IdVocab) -> np.ndarray:
    """Ids as the vocabulary's kind: strings for a string vocabulary, ints (unparseable: -1) for an int one."""
    from embrec.data.interactions import _normalise_ids

    raw = _normalise_ids(ids.reset_index(drop=True), "id")
    if vocab.kind == "str":
        return np.asarray([str(x) for x in raw], dtype=object)
    return raw


def _cell_text(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


class Attributes:
    """The attribute files given with a log, read once, then attached to its Interactions."""

    def __init__(
        self,
        *,
        items: pd.DataFrame | None,
        item_key: str,
        users: pd.DataFrame | None,
        user_key: str,
        types: dict[str, str],
        multi_sep: str,
        names: tuple[str, str],
    ) -> None:
        self.items, self.item_key, self.users, self.user_key = items, item_key, users, user_key
        self.types, self.multi_sep, self.names = types, multi_sep, names

    @classmethod
    def read(
        cls,
        *,
        item_features: str | Path | None,
        item_key: str,
        user_features: str | Path | None,
        user_key: str,
        feature_types: Mapping[str, str] | Sequence[str] | None,
        multi_sep: str = "|",
        encoding: str | None = None,
    ) -> Attributes:
        if not isinstance(multi_sep, str) or not multi_sep:
            raise InvalidParameterError(
                f"multi_sep must be a non-empty string such as '|'; received {describe(multi_sep)}."
            )
        types = feature_type_overrides(feature_types)
        items = (
            None
            if item_features is None
            else read_attributes(
                item_features, key=item_key, what="item features", encoding=encoding
            )
        )
        users = (
            None
            if user_features is None
            else read_attributes(
                user_features, key=user_key, what="user features", encoding=encoding
            )
        )
        if types:
            known = {
                str(c)
                for t, k in ((items, item_key), (users, user_key))
                if t is not None
                for c in t.columns
                if c != k
            }
            stray = [c for c in types if c not in known]
            if stray:
                where = (
                    "the feature files"
                    if items is not None or users is not None
                    else "no feature file"
                )
                raise InvalidParameterError(
                    f"a feature type was given for {stray[0][:40]!r}, which is not a "
                    f"feature column of {where}; feature columns: {sorted(known)[:20]}."
                )
        names = (
            Path(item_features).name if item_features else "",
            Path(user_features).name if user_features else "",
        )
        return cls(
            items=items,
            item_key=item_key,
            users=users,
            user_key=user_key,
            types=types,
            multi_sep=multi_sep,
            names=names,
        )

    def label_source(
        self, label_col: str | None, log: pd.DataFrame, item_col: str, log_name: str
    ) -> tuple[pd.Series, pd.Series] | None:
        """(ids, labels) from the item features file when it has ``label_col``, else from the log."""
        if label_col is None:
            return None
        if self.items is not None and label_col in self.items.columns:
            return self.items[self.item_key], self.items[label_col]
        if label_col in log.columns:
            return log[item_col], log[label_col]
        where = f"{log_name}" + (f" or {self.names[0]}" if self.items is not None else "")
        raise DataError(
            f"item_label_col={label_col[:40]!r} is not a column of {where}; its columns are "
            f"{[str(c) for c in log.columns][:20]}."
        )

    def item_vocab(self, log_items: pd.Series) -> IdVocab | None:
        """The log's items and the feature file's (items without events join the catalogue); None without
        a file (the log's own vocabulary)."""
        if self.items is None:
            return None
        from embrec.data.interactions import _normalise_ids

        log_ids = _normalise_ids(log_items.dropna().reset_index(drop=True), "item")
        file_ids = _normalise_ids(self.items[self.item_key].reset_index(drop=True), self.item_key)
        if log_ids.dtype.kind != file_ids.dtype.kind:  # one side holds text ids: every id is text
            log_ids, file_ids = (
                log_ids.astype(str).astype(object),
                file_ids.astype(str).astype(object),
            )
        vocab = IdVocab.from_values(np.concatenate([log_ids, file_ids]), name="item")
        extra = vocab.n_ids - len(pd.unique(log_ids))
        if extra:
            logger.info(
                "%s: %d items have features but no event; they join the catalogue",
                self.names[0],
                extra,
            )
        return vocab

    def attach(self, log: Any, labels: tuple[pd.Series, pd.Series] | None) -> None:
        """Set ``log.item_features`` / ``user_features`` / ``item_labels`` from the files."""
        for table, key, vocab, attr, name in (
            (self.items, self.item_key, log.items, "item_features", self.names[0]),
            (self.users, self.user_key, log.users, "user_features", self.names[1]),
        ):
            if table is None:
                continue
            own = {c: t for c, t in self.types.items() if c in table.columns and c != key}
            types = infer_types(table, key=key, multi_sep=self.multi_sep, overrides=own)
            if not types:
                raise DataError(
                    f"the {attr.replace('_', ' ')} file {name!r} has no feature column besides "
                    f"its id column {key!r}."
                )
            features = feature_table(
                table, key=key, vocab=vocab, types=types, multi_sep=self.multi_sep
            )
            setattr(log, attr, features)
            logger.info("%s: %s", name, ", ".join(f"{c} ({t})" for c, t in types.items()))
        if labels is not None:
            log.item_labels = labels_for(log.items, labels[0], labels[1])
