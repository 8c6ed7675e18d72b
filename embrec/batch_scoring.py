"""Top-k for every known user of a saved model, streamed in blocks to Parquet (``embrec recommend-all``).

    recommend_all("runs/bpr", "recs.parquet", k=10, exclude_seen=True)

Users are scored ``block`` at a time through the model's own ``top_k`` (its exact scores or its ANN index,
as ``recommend`` does), and each block is written as one Parquet row group of the long table
``user, rank, item, score`` (rank 1 = best) with pyarrow, so memory holds one block of scores, never the
whole users x k table. Under torchrun (``WORLD_SIZE`` > 1) rank r scores blocks r, r + W, r + 2W, ... and
``out`` is a directory of ``part-<r>.parquet`` files (one Parquet dataset: ``pandas.read_parquet(out)``);
with one process ``out`` is the file itself. Written to a temporary name, then renamed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from embrec.errors import InvalidParameterError, check_positive_int
from embrec.models import distributed

logger = logging.getLogger(__name__)


def _ids(values: np.ndarray) -> pa.Array:
    """Raw ids as an Arrow column (ints stay ints; anything else becomes strings)."""
    if values.dtype.kind in "iu":
        return pa.array(values.astype(np.int64))
    if values.dtype.kind == "O" and all(isinstance(v, (int, np.integer)) for v in values[:1000]):
        try:
            return pa.array(values.astype(np.int64))
        except (TypeError, ValueError, OverflowError):
            pass
    return pa.array(values.astype(str))


def recommend_all(
    model: Any,
    out: str | Path,
    *,
    k: int = 10,
    exclude_seen: bool = False,
    block: int = 4096,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the top ``k`` items of every known user of ``model`` to ``out``; returns a summary."""
    k = model._check_k(k)
    block = check_positive_int("block", block)
    out = Path(out)
    world = distributed.init()
    n_users = model.users_.n_ids
    starts = list(range(1, n_users + 1, block))[world.rank :: world.size]
    if world.distributed:
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"part-{world.rank}.parquet"
    else:
        if out.is_dir():
            raise InvalidParameterError(
                f"out must be a file path for one process; {str(out)[:80]!r} is a directory."
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        target = out
    tmp = target.with_name(target.name + ".tmp")
    schema = None
    writer = None
    t0, rows_written = time.perf_counter(), 0
    show = progress if progress is not None else False
    try:
        for s in tqdm(starts, desc="recommend-all", unit="block", disable=not show):
            user_rows = np.arange(s, min(s + block, n_users + 1), dtype=np.int64)
            hist = model.seen_.select(user_rows)
            items, scores = model.top_k(user_rows, hist, k, exclude=hist if exclude_seen else None)
            found = items > 0  # fewer than k candidates left (exclude_seen on a small catalogue)
            b = user_rows.size
            table = pa.table(
                {
                    "user": _ids(np.repeat(model.users_.decode(user_rows), k)[found.reshape(-1)]),
                    "rank": pa.array(
                        np.tile(np.arange(1, k + 1, dtype=np.int32), b)[found.reshape(-1)]
                    ),
                    "item": _ids(model.items_.decode(items[found])),
                    "score": pa.array(scores[found].astype(np.float32)),
                }
            )
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.cast(schema), row_group_size=max(table.num_rows, 1))
            rows_written += table.num_rows
        if writer is None:  # no block for this rank: an empty file with the columns
            empty = pa.table(
                {
                    "user": pa.array([], pa.string()),
                    "rank": pa.array([], pa.int32()),
                    "item": pa.array([], pa.string()),
                    "score": pa.array([], pa.float32()),
                }
            )
            pq.write_table(empty, tmp)
        else:
            writer.close()
            writer = None
        os.replace(tmp, target)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    distributed.barrier()
    logger.info(
        "recommend-all: %d rows for %d blocks in %.1f s (rank %d of %d)",
        rows_written,
        len(starts),
        seconds,
        world.rank,
        world.size,
    )
    return {
        "out": str(out),
        "k": k,
        "exclude_seen": bool(exclude_seen),
        "users": int(n_users),
        "rows": int(rows_written),
        "seconds": round(seconds, 3),
        "rank": world.rank,
        "world_size": world.size,
    }
