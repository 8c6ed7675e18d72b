"""``synthetic(..., out=DIR)``: the synthetic shop written to a Parquet directory chunk by chunk.

The in-memory generator draws each row-level quantity for the whole log at once, one after the other from
one generator: ``u`` (n doubles), ``v`` (n doubles), the favourite picks (one bounded integer per repeat
row), the category draws (one double per category row), the any-item draws (one per remaining row) and the
quantities (geometric). Here every one of those streams gets its own generator started at the state where
the in-memory generator starts drawing it: the double streams by ``PCG64.advance`` (a double is exactly one
64-bit draw), the state after the favourite picks by drawing them once without keeping them (their count
comes from a first pass over ``u`` and ``v``). Each stream then yields, chunk after chunk, exactly the
values the whole-log draw would, so the rows written equal ``synthetic()``'s whatever ``chunk_rows`` is
(tests/test_parquet_stream.py checks it).

What stays in memory: the basket table (size, owner, time and theme of every basket: ~4 int64 per basket,
about 8 bytes per event at the default 4 items per basket), the catalogue and one chunk of rows. The
user's rows of a chunk are written as text ids (``U0001``...), like ``synthetic().to_frame()``.

Files: ``part-00000.parquet``, ``part-00001.parquet``, ... (lexicographic = log order), columns ``user``
(text), ``item`` (text), ``quantity`` (float32), ``timestamp`` (timestamp[s]), ``basket`` (int64; a basket
never spans two files). Beside them ``_item_features.parquet`` (item, category, price, description: the
item features and labels of ``synthetic()``) and ``_user_features.parquet`` (user, segment); their leading
``_`` keeps them out of the log's scan. Read them back with::

    from_file(out, user_col="user", item_col="item", rating_col="quantity", time_col="timestamp",
              group_col="basket", item_features=out / "_item_features.parquet",
              user_features=out / "_user_features.parquet")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from embrec.errors import OutputPathError, check_positive_int

if TYPE_CHECKING:
    from embrec.datasets.synthetic import RowRecipe, SyntheticTruth

logger = logging.getLogger(__name__)


def _at(state: dict, advance: int) -> np.random.Generator:
    """A generator in ``state`` moved ``advance`` 64-bit draws on (the buffered 32-bit half kept)."""
    bit = np.random.PCG64()
    bit.state = state
    if advance:
        bit.advance(
            advance
        )  # resets the buffered uint32, which random() never touches: put it back
        moved = bit.state
        moved["has_uint32"], moved["uinteger"] = state["has_uint32"], state["uinteger"]
        bit.state = moved
    return np.random.Generator(bit)


def _kinds(
    pos: np.ndarray, u: np.ndarray, v: np.ndarray, rows: RowRecipe
) -> tuple[np.ndarray, ...]:
    """(is_succ, is_rep, is_cat, is_any) of rows at positions ``pos`` in their baskets."""
    is_succ = (pos > 0) & (u < rows.p_succ)
    is_rep = ~is_succ & (v < rows.p_rep)
    is_cat = ~is_succ & ~is_rep & (v < rows.p_rep + (1.0 - rows.p_rep) * rows.p_cat)
    is_any = ~is_succ & ~is_rep & ~is_cat
    return is_succ, is_rep, is_cat, is_any


def _bounds(sizes: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """Basket ranges [b0, b1) of about ``chunk_rows`` rows each."""
    ends = np.cumsum(sizes)
    out, b0 = [], 0
    while b0 < sizes.size:
        at = (int(ends[b0 - 1]) if b0 else 0) + chunk_rows
        b1 = max(b0 + 1, int(np.searchsorted(ends, at, side="right")))
        out.append((b0, min(b1, sizes.size)))
        b0 = out[-1][1]
    return out


def write_rows(
    out: str | Path,
    n: int,
    rows: RowRecipe,
    sizes: np.ndarray,
    owner: np.ndarray,
    seconds: np.ndarray,
    theme: np.ndarray,
    rng: np.random.Generator,
    *,
    t0: np.datetime64,
    n_users: int,
    n_items: int,
    chunk_rows: int,
    name: str,
) -> Path:
    """Write the rows of ``synthetic`` to ``out`` (see the module docstring); ``rng`` is in the state where
    the in-memory generator starts its row draws."""
    from embrec.datasets.synthetic import _ids

    chunk_rows = check_positive_int("chunk_rows", chunk_rows)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputPathError(
            f"out must be a new or empty directory for the synthetic log's Parquet files; received "
            f"{str(out)!r}, which {'is not a directory' if not out.is_dir() else 'is not empty'}."
        )
    out.mkdir(parents=True, exist_ok=True)
    state = rng.bit_generator.state
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    chunks = _bounds(sizes, chunk_rows)

    def spans(b0: int, b1: int) -> tuple[np.ndarray, np.ndarray]:
        basket = np.repeat(np.arange(b0, b1), sizes[b0:b1])
        return basket, np.arange(starts[b0], starts[b0] + basket.size) - starts[basket]

    # pass 1: how many rows of each kind (the lengths of the streams drawn after u and v)
    gu, gv = _at(state, 0), _at(state, n)
    counts = np.zeros(4, dtype=np.int64)
    for b0, b1 in chunks:
        basket, pos = spans(b0, b1)
        kinds = _kinds(pos, gu.random(pos.size), gv.random(pos.size), rows)
        counts += [int(k.sum()) for k in kinds]
    n_rep, n_cat, n_any = (int(c) for c in counts[1:])
    n_fav = rows.fav.shape[1]
    skip = _at(state, 2 * n)
    for k in range(
        0, n_rep, 1 << 22
    ):  # the favourite picks, drawn once only to learn the state after them
        skip.integers(0, n_fav, size=min(1 << 22, n_rep - k))
    after_rep = skip.bit_generator.state

    # pass 2: the rows, chunk by chunk, each stream from its own generator
    gu, gv, gr = _at(state, 0), _at(state, n), _at(state, 2 * n)
    gc, ga, gq = _at(after_rep, 0), _at(after_rep, n_cat), _at(after_rep, n_cat + n_any)
    user_ids = pa.array(_ids("U", n_users), type=pa.string())
    item_ids = pa.array(_ids("I", n_items), type=pa.string())
    width = max(5, len(str(len(chunks))))
    bar = tqdm(
        total=n, desc=f"write {name}", unit="row", unit_scale=True, disable=None, mininterval=1.0
    )
    for j, (b0, b1) in enumerate(chunks):
        basket, pos = spans(b0, b1)
        m = pos.size
        _, is_rep, is_cat, is_any = kinds = _kinds(pos, gu.random(m), gv.random(m), rows)
        user = owner[basket]
        item = np.zeros(m, dtype=np.int64)
        item[is_rep] = rows.fav[user[is_rep], gr.integers(0, n_fav, size=int(is_rep.sum()))]
        item[is_cat] = rows.sampler.draw(theme[basket[is_cat]], gc)
        item[is_any] = rows.sampler.draw_any(int(is_any.sum()), ga)
        succ_rows = np.flatnonzero(kinds[0])
        succ_rows = succ_rows[np.argsort(pos[succ_rows], kind="stable")]
        if succ_rows.size:
            bounds = np.searchsorted(pos[succ_rows], np.arange(1, int(pos.max()) + 2))
            for k in range(bounds.size - 1):  # position by position: row r follows row r - 1
                at = succ_rows[bounds[k] : bounds[k + 1]]
                item[at] = rows.succ[item[at - 1]]
        quantity = gq.geometric(0.5, size=m).astype(np.float32)
        table = pa.table(
            {
                "user": user_ids.take(pa.array(user)),
                "item": item_ids.take(pa.array(item)),
                "quantity": pa.array(quantity),
                "timestamp": pa.array(t0 + seconds[basket].astype("timedelta64[s]")),
                "basket": pa.array(basket),
            }
        )
        pq.write_table(table, out / f"part-{j:0{width}d}.parquet", row_group_size=1 << 20)
        bar.update(m)
    bar.close()
    logger.info(
        "wrote %s: %d events in %d Parquet files (%d baskets)", out, n, len(chunks), sizes.size
    )
    return out


def write_features(out: Path, truth: SyntheticTruth, *, n_users: int, n_items: int) -> None:
    """``_item_features.parquet`` and ``_user_features.parquet`` of the planted truth in ``out``."""
    from embrec.datasets.synthetic import _ids

    labels = np.asarray(truth.category_labels, dtype=object)
    items = pa.table(
        {
            "item": pa.array(_ids("I", n_items), type=pa.string()),
            "category": pa.array(labels[truth.item_category[1:]], type=pa.string()),
            "price": pa.array(truth.price[1:]),
            "description": pa.array(truth.description[1:], type=pa.string()),
        }
    )
    pq.write_table(items, out / "_item_features.parquet")
    users = pa.table(
        {
            "user": pa.array(_ids("U", n_users), type=pa.string()),
            "segment": pa.array(labels[truth.user_segment[1:]], type=pa.string()),
        }
    )
    pq.write_table(users, out / "_user_features.parquet")
