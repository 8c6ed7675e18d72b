"""Do an embedding's nearest neighbours make sense? Genre overlap of top-k neighbours vs random pairs.

For every query item i (with at least one label), take its ``k`` nearest items by cosine (or dot) over
the item embeddings, itself excluded, and measure how much their label sets agree:

- ``jaccard``  |G_i ∩ G_j| / |G_i ∪ G_j|, averaged over all (item, neighbour) pairs;
- ``share``    the fraction of (item, neighbour) pairs with at least one label in common.

The baseline is the same measure over random pairs, computed exactly as the mean over ALL ordered
pairs (i, j), i ≠ j, of labelled items (blocked, so no N×N matrix is kept) — the expectation of a
random neighbour list, with no sampling noise. ``ratio`` = neighbour jaccard / random jaccard:
1 means the neighbours are no better than chance; the rating DNN should reach ≥ 2 on ml-100k genres.

    overlap = genre_overlap(model.item_embeddings(), genres, k=10)          # pure function
    overlap = model_genre_overlap(model, data, column="genres")              # rows aligned for you

``genres`` is a Ragged of label codes row-aligned with the embeddings (e.g. a FeatureTable's
``multi_hot["genres"]`` without its padding row). Items without a label are not queried and not
counted as neighbours' partners in the means (a pair needs two labelled items).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, InvalidParameterError, check_choice, check_positive_int

_BLOCK = 1024


def genre_overlap(item_vectors: np.ndarray, genres: Ragged, *, k: int = 10, measure: str = "cosine",
                  queries: np.ndarray | None = None) -> dict[str, float]:
    """{"neighbour_jaccard", "random_jaccard", "ratio", "neighbour_share", "random_share", "n_queries", "k"}.

    ``item_vectors`` (n, d) and ``genres`` (n rows) are row-aligned; ``queries`` optionally restricts
    the query items to these positions (e.g. items with enough ratings); neighbours come from all items.
    """
    from embrec.index.exact import ExactIndex

    vecs = np.asarray(item_vectors, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] < 2:
        raise InvalidParameterError(f"item_vectors must be a 2-D array with at least 2 rows; received shape {vecs.shape}.")
    if not isinstance(genres, Ragged) or len(genres) != vecs.shape[0]:
        raise InvalidParameterError(f"genres must be a Ragged with one row per item vector ({vecs.shape[0]}); "
                                    f"received {len(genres) if isinstance(genres, Ragged) else type(genres).__name__}.")
    k = check_positive_int("k", k)
    check_choice("measure", measure, ("cosine", "dot"))
    n = vecs.shape[0]
    if k >= n:
        raise InvalidParameterError(f"k must be smaller than the number of items ({n}); received {k}.")
    labelled = genres.lengths > 0
    if labelled.sum() < 2:
        raise DataError("genre_overlap needs at least two items with a label; received fewer.")
    onehot = _one_hot(genres)  # (n, L)
    sizes = onehot.sum(1)  # (n,)
    q = np.flatnonzero(labelled) if queries is None else np.asarray(queries, dtype=np.int64)
    if q.size and (q.min() < 0 or q.max() >= n):
        raise InvalidParameterError(f"queries must be positions in 0..{n - 1}; received values in {q.min()}..{q.max()}.")
    q = q[labelled[q]]
    if q.size == 0:
        raise DataError("none of the query items has a label; nothing to measure.")
    cand = np.flatnonzero(labelled)
    index = ExactIndex(measure=measure).index(vecs[cand], cand)
    found, _ = index.search(vecs[q], k, exclude=Ragged.from_lists([[i] for i in q]))  # (Q, k)
    pairs_i = np.repeat(q, k)
    pairs_j = found.ravel()
    ok = pairs_j >= 0
    jac, share = _pair_overlap(onehot, sizes, pairs_i[ok], pairs_j[ok])
    rand_jac, rand_share = _all_pairs_overlap(onehot[cand], sizes[cand])
    return {
        "neighbour_jaccard": float(jac.mean()),
        "random_jaccard": rand_jac,
        "ratio": float(jac.mean() / rand_jac) if rand_jac > 0 else float("inf"),
        "neighbour_share": float(share.mean()),
        "random_share": rand_share,
        "n_queries": int(q.size),
        "k": k,
    }


def model_genre_overlap(model: Any, data: Interactions, *, column: str = "genres", k: int = 10,
                        measure: str = "cosine", min_count: int = 1) -> dict[str, float]:
    """``genre_overlap`` of a fitted embedding model's items, labels from ``data.item_features[column]``
    (re-encoded to the model's item vocabulary); queries are items with ≥ ``min_count`` training events."""
    if data.item_features is None or column not in data.item_features.multi_hot:
        have = [] if data.item_features is None else list(data.item_features.multi_hot)
        raise DataError(f"column={column!r} must be a multi-hot item feature of data; it has {have}.")
    if data.items != model.items_:
        data = data.reencode(data.users, model.items_)
    genres = data.item_features.multi_hot[column].select(np.arange(1, model.items_.size))  # drop padding
    queries = np.flatnonzero(np.asarray(model.item_counts_)[1:] >= min_count)
    return genre_overlap(model.item_embeddings(), genres, k=k, measure=measure, queries=queries)


def _one_hot(genres: Ragged) -> np.ndarray:
    n_labels = int(genres.values.max()) + 1 if genres.values.size else 1
    out = np.zeros((len(genres), n_labels), dtype=np.float32)
    out[genres.row_ids, genres.values] = 1.0
    return out


def _pair_overlap(onehot: np.ndarray, sizes: np.ndarray, i: np.ndarray, j: np.ndarray):
    inter = np.einsum("pl,pl->p", onehot[i], onehot[j])  # (P,)
    union = sizes[i] + sizes[j] - inter
    return inter / union, (inter > 0).astype(np.float64)


def _all_pairs_overlap(onehot: np.ndarray, sizes: np.ndarray) -> tuple[float, float]:
    """Mean jaccard and share over all ordered pairs i ≠ j, in blocks of rows (O(block × n) memory)."""
    n = onehot.shape[0]
    jac_sum = share_sum = 0.0
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        inter = onehot[s:e] @ onehot.T  # (b, n)
        union = sizes[s:e, None] + sizes[None, :] - inter
        jac = inter / union
        share = (inter > 0).astype(np.float64)
        diag = np.arange(s, e)
        jac[diag - s, diag] = 0.0  # drop the pairs (i, i)
        share[diag - s, diag] = 0.0
        jac_sum += float(jac.sum())
        share_sum += float(share.sum())
    pairs = n * (n - 1)
    return jac_sum / pairs, share_sum / pairs
