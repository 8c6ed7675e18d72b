"""An interaction log given as a directory of Parquet files, read in one streaming pass.

    log = from_file("events/", user_col="user", item_col="item", time_col="ts", group_col="basket")

``from_file`` (and so ``--data DIR`` in the CLI) sends a directory here. The log is never held as a
DataFrame: the files are scanned in record batches (``pyarrow.dataset``), each chunk's ids are mapped to
integer codes against vocabularies that grow chunk by chunk, and the events land in preallocated compact
arrays (int32 codes, float32 ratings, int64 nanosecond times, int64 group ids) that become the
``Interactions``. Peak memory is these arrays, the vocabularies and one chunk (``chunk_rows`` rows).

Rules (the same as for one file, so a directory and one file holding the same rows in the same order give
identical ``Interactions``):

- **Files and row order.** Every ``*.parquet`` / ``*.pq`` file under the directory (recursively; names
  starting with ``.`` or ``_`` are skipped, like Spark's ``_SUCCESS``), in lexicographic order of their
  paths relative to the directory; rows in file order. Hive partition folders (``day=2023-01-01/``) are
  columns too, so ``--group-col day`` or ``--user-col shop`` may name one.
- **Ids.** Integer columns (and floats holding whole numbers) are integer ids, string columns text ids with
  surrounding white space stripped (as a Parquet file's are: text that looks like a number stays text).
  Negative numeric ids are refused. Vocabularies are the distinct ids **sorted** — integers numerically,
  text by code point — exactly ``IdVocab.from_values``, so the codes given while scanning are renumbered
  once at the end and the result does not depend on how the rows are split into files or chunks.
- **Ratings** are numbers (float32, finite); **times** Parquet timestamps or dates (time-zone aware ones
  converted to UTC), unix seconds, or text read chunk by chunk by the rules of ``embrec.data.timeparse``
  (give ``time_format`` for text dates, so that every chunk is read the same way); **groups** start a new
  group id whenever the label changes from the previous row, across file boundaries too.
- **Bad input**: a directory without Parquet files or without rows, a column some file lacks, a column whose
  type differs between files (integer ids in one, text in another), a missing or unreadable value:
  ``DataError`` naming the file or column.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from tqdm.auto import tqdm

from embrec.data import IdVocab, Interactions
from embrec.errors import DataError, describe

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
#: rows mapped at once: the scan's batches are gathered up to this many (one vocabulary lookup per chunk)
CHUNK_ROWS = 1 << 20
#: batches the scan decodes ahead of the one being mapped (pyarrow's default, 16 batches of 4 files at
#: once, held ~380 MB of decoded text ids at 4M events, measured; 2 ahead of one file keeps the decoding
#: threads busy at a fraction of that)
BATCH_READAHEAD = 2


@dataclass
class RatingStats:
    """What ``guess_rating_kind`` needs of a rating column, gathered while scanning."""

    low: float = np.inf
    high: float = -np.inf
    whole: bool = True

    def update(self, values: np.ndarray) -> None:
        if values.size:
            self.low = min(self.low, float(values.min()))
            self.high = max(self.high, float(values.max()))
            self.whole = self.whole and bool(np.all(values == np.round(values)))


def parquet_files(root: Path) -> list[Path]:
    """The Parquet files of ``root`` in scan order (see the module docstring)."""
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if any(p.startswith((".", "_")) for p in rel) or not path.is_file():
            continue
        if path.name.lower().endswith(PARQUET_SUFFIXES):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_parquet_dir(
    root: str | Path,
    cols: Mapping[str, str | None],
    *,
    time_format: str | None = None,
    missing_users: Literal["error", "unknown"] = "error",
    name: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool | None = None,
) -> tuple[Interactions, RatingStats | None]:
    """(Interactions, rating statistics or None) of the directory ``root``. ``cols`` maps ``user_col``,
    ``item_col`` (required) and ``rating_col``, ``time_col``, ``group_col`` (None: absent) to column names,
    as ``from_file`` has checked them; ``rating_kind`` is left to the caller (``from_file`` guesses it
    from the statistics). ``progress`` None: a bar on a terminal."""
    root = Path(root).expanduser()
    name = name or root.name
    files = parquet_files(root)
    if not files:
        raise DataError(
            f"directory {root} holds no .parquet or .pq file; expected a Parquet dataset "
            "(a folder of Parquet files, hive partitions allowed)."
        )
    used = {p: c for p, c in cols.items() if c is not None}
    try:
        dataset = ds.dataset(
            [str(f) for f in files],
            format="parquet",
            partitioning="hive",
            partition_base_dir=str(root),
        )
        schema = _unified_schema(dataset, used, root)
        dataset = ds.dataset(
            [str(f) for f in files],
            schema=schema,
            format="parquet",
            partitioning="hive",
            partition_base_dir=str(root),
        )
        n = int(sum(frag.count_rows() for frag in dataset.get_fragments()))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"directory {root} could not be read as a Parquet dataset ({_first_line(exc)})."
        ) from None
    if n == 0:
        raise DataError(
            f"the Parquet files of {root} hold no rows (columns {schema.names}); expected at "
            "least one interaction."
        )
    if n >= 2**31 - 1:
        raise DataError(
            f"directory {root} holds {n:,} rows; at most {2**31 - 2:,} rows can be read at once."
        )
    reader = _Reader(n, used, schema, time_format=time_format, missing_users=missing_users)
    bar = tqdm(
        total=n,
        desc=f"read {name}",
        unit="row",
        unit_scale=True,
        disable=None if progress is None else not progress,
        mininterval=1.0,
    )
    try:
        for chunk in _chunks(dataset, list(dict.fromkeys(used.values())), chunk_rows):
            reader.add(chunk)
            bar.update(chunk.num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"directory {root} could not be read as a Parquet dataset ({_first_line(exc)})."
        ) from None
    finally:
        bar.close()
    log = reader.finish(name)
    logger.info("streamed %r from %d Parquet files in %s", log, len(files), root)
    return log, reader.stats


def _chunks(dataset: ds.Dataset, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    """The dataset's rows in scan order, as tables of ``chunk_rows`` rows (the last one shorter): the
    scan's batches gathered, and cut where a chunk is full (a batch may span two chunks), so a chunk
    never holds up to twice ``chunk_rows`` rows when the batches fall just short of it."""
    buf: list[pa.RecordBatch] = []
    held = 0
    for batch in dataset.to_batches(
        columns=columns,
        batch_size=min(chunk_rows, 1 << 20),
        batch_readahead=BATCH_READAHEAD,
        fragment_readahead=1,
        use_threads=True,
    ):
        if batch.num_rows == 0:
            continue
        buf.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(buf)
            yield table.slice(0, chunk_rows).combine_chunks()
            rest = table.slice(chunk_rows)
            buf, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(buf).combine_chunks()


# schema ----------------------------------------------------------------------------------------
def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    if pa.types.is_timestamp(t):
        return "timestamp_tz" if t.tz else "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_boolean(t):
        return "bool"
    return str(t)


_ALLOWED = {
    "user_col": {"int", "float", "str"},
    "item_col": {"int", "float", "str"},
    "rating_col": {"int", "float", "str", "bool"},
    "time_col": {"int", "float", "str", "timestamp", "timestamp_tz", "date"},
    "group_col": {"int", "float", "str", "bool", "date", "timestamp", "timestamp_tz"},
}
_WIDE = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.large_string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ns"),
    "timestamp_tz": pa.timestamp("ns"),
    "date": pa.timestamp("ns"),
}


def _unified_schema(dataset: ds.Dataset, used: dict[str, str], root: Path) -> pa.Schema:
    """One type per used column over every file (ints widen to int64, ints beside floats to float64);
    a column missing from a file or of another kind of type in another file is refused."""
    seen: dict[str, tuple[str, str]] = {}  # column -> (kind, first file)
    part_names = {  # the keys of hive folders (key=value) above the files
        seg.split("=", 1)[0]
        for frag in dataset.get_fragments()
        for seg in Path(frag.path).relative_to(root).parts[:-1]
        if "=" in seg
    }
    all_names: set[str] = set()
    for frag in dataset.get_fragments():
        phys = frag.physical_schema
        fname = Path(frag.path).relative_to(root).as_posix()
        names = set(phys.names) | part_names
        all_names |= names
        for param, col in used.items():
            if col not in names:
                if not any(
                    col in set(f.physical_schema.names) | part_names
                    for f in dataset.get_fragments()
                ):
                    present = sorted(all_names | set(dataset.schema.names))
                    close = difflib.get_close_matches(col, present, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else "."
                    raise DataError(
                        f"{param}={col!r} is not a column of the Parquet files of {root}; their "
                        f"columns are {present}{hint}"
                    )
                raise DataError(
                    f"{param}={col!r} is a column of some Parquet files of {root} but not of "
                    f"{fname} (its columns are {phys.names}); expected it in every file."
                )
            t = phys.field(col).type if col in phys.names else dataset.schema.field(col).type
            kind = _kind(t)
            if kind not in _ALLOWED[param]:
                raise DataError(
                    f"{param}={col!r} must hold {_expected(param)}; received {t} in {fname}."
                )
            if col not in seen:
                seen[col] = (kind, fname)
                continue
            first, where = seen[col]
            if first != kind and {first, kind} != {"int", "float"}:
                raise DataError(
                    f"column {col!r} has mixed types across the Parquet files of {root}: "
                    f"{_shown(first)} in {where} but {_shown(kind)} in {fname}; expected one type "
                    "in every file."
                )
            if {first, kind} == {"int", "float"}:
                seen[col] = ("float", where)
    fields = [pa.field(c, _WIDE[k]) for c, (k, _) in seen.items()]
    return pa.schema(fields)


def _expected(param: str) -> str:
    return {
        "user_col": "integer or text ids",
        "item_col": "integer or text ids",
        "rating_col": "numbers",
        "time_col": "timestamps, dates, unix seconds or text dates",
        "group_col": "group labels",
    }[param]


def _shown(kind: str) -> str:
    return {
        "int": "integers",
        "float": "floats",
        "str": "text",
        "timestamp_tz": "time-zone aware timestamps",
        "timestamp": "timestamps without a time zone",
        "date": "dates",
        "bool": "booleans",
    }.get(kind, kind)


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


# the streaming pass ----------------------------------------------------------------------------
class _GrowingVocab:
    """Raw ids -> codes in order of first appearance, grown chunk by chunk; ``sorted()`` renumbers them
    into ``IdVocab.from_values`` order at the end."""

    def __init__(self, arrow_type: pa.DataType, name: str) -> None:
        self.name = name
        self.known = pa.array([], type=arrow_type)

    def encode(self, values: pa.Array) -> np.ndarray:
        """(len(values),) int32 codes; -1 where the value is null."""
        enc = pc.dictionary_encode(values)
        uniq = enc.dictionary
        pos = pc.fill_null(pc.index_in(uniq, value_set=self.known), -1).to_numpy().astype(np.int64)
        new = pos < 0
        if new.any():
            start = len(self.known)
            pos[new] = np.arange(start, start + int(new.sum()))
            self.known = pa.concat_arrays([self.known, uniq.filter(pa.array(new))])
        idx = enc.indices
        if not len(uniq):  # every value missing
            return np.full(len(values), -1, dtype=np.int32)
        codes = pos[pc.fill_null(idx, 0).to_numpy()].astype(np.int32)
        if idx.null_count:
            codes[idx.is_null().to_numpy(zero_copy_only=False)] = -1
        return codes

    def sorted(self) -> tuple[IdVocab, np.ndarray]:
        """(the vocabulary, sorted; (len(known) + 1,) int64 map code + 1 -> row, slot 0 -> 0 for nulls)."""
        order = pc.sort_indices(self.known).to_numpy()
        rank = np.zeros(len(self.known) + 1, dtype=np.int64)
        rank[order + 1] = np.arange(1, order.size + 1)
        ids = self.known.take(pa.array(order)).to_numpy(zero_copy_only=False)
        if ids.dtype.kind != "i":
            ids = ids.astype(object)
        return IdVocab(ids, name=self.name), rank


class _Reader:
    """The arrays being filled while the dataset is scanned."""

    def __init__(
        self,
        n: int,
        used: dict[str, str],
        schema: pa.Schema,
        *,
        time_format: str | None,
        missing_users: str,
    ) -> None:
        self.used, self.time_format, self.missing_users = used, time_format, missing_users
        self.at = 0
        self.user = np.empty(n, dtype=np.int32)
        self.item = np.empty(n, dtype=np.int32)
        self.rating = np.empty(n, dtype=np.float32) if "rating_col" in used else None
        self.time = np.empty(n, dtype=np.int64) if "time_col" in used else None
        self.group = np.empty(n, dtype=np.int64) if "group_col" in used else None
        self.stats = RatingStats() if self.rating is not None else None
        self.vocabs = {
            p: _GrowingVocab(_id_type(schema.field(used[p]).type), p[:4])
            for p in ("user_col", "item_col")
        }
        self.missing_user_rows = 0
        self._last_label: object = None
        self._last_group = -1

    def add(self, chunk: pa.Table) -> None:
        a, b = self.at, self.at + chunk.num_rows
        for param, out in (("user_col", self.user), ("item_col", self.item)):
            col = self.used[param]
            codes = self.vocabs[param].encode(_ids(chunk.column(col).combine_chunks(), col))
            if (codes < 0).any():
                count = int((codes < 0).sum())
                if param == "item_col":
                    raise DataError(
                        f"item column {col!r} has missing ids (at least {count}); expected an id "
                        "on every row."
                    )
                if self.missing_users == "error":
                    raise DataError(
                        f"user column {col!r} has missing ids (at least {count}); expected an id "
                        "on every row (or missing_users='unknown' to map them to the unknown user)."
                    )
                self.missing_user_rows += count
            out[a:b] = codes
        if self.rating is not None:
            self.rating[a:b] = self._ratings(chunk.column(self.used["rating_col"]).combine_chunks())
        if self.time is not None:
            self.time[a:b] = self._times(chunk.column(self.used["time_col"]).combine_chunks())
        if self.group is not None:
            self.group[a:b] = self._groups(chunk.column(self.used["group_col"]).combine_chunks())
        self.at = b

    def _ratings(self, arr: pa.Array) -> np.ndarray:
        col = self.used["rating_col"]
        if pa.types.is_large_string(arr.type):
            values = pd.to_numeric(arr.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)
        else:
            values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        if np.isnan(values).any():
            raise DataError(
                f"rating column {col!r} has missing or non-numeric values (at least "
                f"{int(np.isnan(values).sum())})."
            )
        out = values.astype(np.float32)
        if np.isinf(out).any():
            raise DataError(
                f"rating column {col!r} must hold finite numbers; received "
                f"{int(np.isinf(out).sum())} infinite (or beyond float32) values."
            )
        self.stats.update(values)
        return out

    def _times(self, arr: pa.Array) -> np.ndarray:
        from embrec.data.interactions import parse_timestamps
        from embrec.datasets.files import _maybe_dates

        col = self.used["time_col"]
        if pa.types.is_timestamp(arr.type):
            if arr.null_count:
                raise DataError(
                    f"time column {col!r} must hold dates or unix seconds; received "
                    f"{arr.null_count} missing values."
                )
            return arr.cast(pa.int64()).to_numpy()
        series = (
            pd.Series(arr.to_numpy(zero_copy_only=False))
            if not pa.types.is_large_string(arr.type)
            else arr.to_pandas()
        )
        return parse_timestamps(_maybe_dates(series, col, self.time_format), col).view(np.int64)

    def _groups(self, arr: pa.Array) -> np.ndarray:
        col = self.used["group_col"]
        if arr.null_count:
            raise DataError(f"group column {col!r} has missing values (at least {arr.null_count}).")
        change = np.empty(len(arr), dtype=bool)
        first = arr[0].as_py()
        change[0] = self._last_group < 0 or first != self._last_label
        if len(arr) > 1:
            change[1:] = pc.not_equal(arr.slice(1), arr.slice(0, len(arr) - 1)).to_numpy(
                zero_copy_only=False
            )
        ids = self._last_group + np.cumsum(change)
        self._last_group, self._last_label = int(ids[-1]), arr[len(arr) - 1].as_py()
        return ids

    def finish(self, name: str) -> Interactions:
        users, u_rank = self.vocabs["user_col"].sorted()
        items, i_rank = self.vocabs["item_col"].sorted()
        # in place on the int32 codes (code -1, a missing user, -> slot 0 -> row 0), then one gather:
        # the only new array is the int64 column itself
        self.user += 1
        user = u_rank[self.user]
        del self.user
        self.item += 1
        item = i_rank[self.item]
        del self.item
        if self.missing_user_rows:
            logger.info(
                "%s: %d rows without a user id read as the unknown user",
                name,
                self.missing_user_rows,
            )
        ts = None if self.time is None else self.time.view("datetime64[ns]")
        return Interactions(user, item, users, items, self.rating, ts, self.group, name=name)


def _id_type(t: pa.DataType) -> pa.DataType:
    return pa.large_string() if pa.types.is_large_string(t) else pa.int64()


def _ids(arr: pa.Array, col: str) -> pa.Array:
    """A chunk of an id column as int64 ids or stripped text (see the module docstring)."""
    if pa.types.is_large_string(arr.type):
        return pc.utf8_trim_whitespace(arr)
    if pa.types.is_floating(arr.type):
        present = arr.drop_null()
        whole = pc.equal(pc.floor(present), present)
        if len(present) and not pc.all(whole).as_py():
            bad = present.filter(pc.invert(whole))[0].as_py()
            raise DataError(
                f"id column {col!r} must hold integers or text; received {describe(bad)}."
            )
        if len(present) and pc.max(pc.abs(present)).as_py() >= 2**53:
            raise DataError(
                f"id column {col!r} holds floats beyond 2**53, which are not exact ids; write them "
                "as integers or text."
            )
        arr = pc.cast(arr, pa.int64())
    if len(arr) and arr.null_count < len(arr):
        low = pc.min(arr).as_py()
        if low < 0:
            raise DataError(f"id column {col!r} must hold non-negative ids; received {low!r}.")
    return arr
