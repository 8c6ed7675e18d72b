"""Exact top-k retrieval by streaming blocks of items with a running top-k.

Memory is O(query_batch x block_size): the full queries x items score matrix is never formed,
so `similar_items` over a 1M-item catalogue needs no N x N matrix.

Ties (embrec's one rule, as ``embrec.models.base.top_k_rows``): equal scores come out by the lower
indexed position first -- the lower item row for a model's index, whose ids are rows 1..n in order.
"""

from __future__ import annotations

import numpy as np
import torch

from embrec.data.ragged import Ragged
from embrec.errors import InvalidParameterError, NotFittedError, check_choice, check_positive_int
from embrec.index.topk import top_k_rows
from embrec.nn import compiled

MEASURES = ("dot", "cosine")


#: the compiled path's tile of scores, queries x items: 512 x 4,096 float32 = 8 MB, read by the selection
#: while still in cache (measured on 1M x 100k: larger tiles made every pass over the scores a memory pass)
TILE_QUERIES = 512
TILE_ITEMS = 4096


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    norms = np.sqrt(
        np.add.reduce(x * x, axis=1, keepdims=True)
    )  # np.linalg.norm's sum, without its dispatch
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def allowed_positions(allow: np.ndarray | None, pos_of: np.ndarray) -> np.ndarray | None:
    """Ascending index positions of the ids in ``allow`` (ids the index does not hold are skipped),
    or None for no restriction. Ascending keeps the tie rule: a lower position still comes first."""
    if allow is None:
        return None
    ids = np.asarray(allow, dtype=np.int64).ravel()
    ids = ids[(ids >= 0) & (ids < pos_of.size)]
    pos = pos_of[ids]
    return np.unique(pos[pos >= 0])


def cannot_overflow(q: np.ndarray, bound: float) -> bool:
    """True when no product of a row of ``q`` with a vector whose entries are at most ``bound`` in
    absolute value can reach inf (every partial sum is at most |q_row|_1 x bound, whatever the order of
    summation), so with finite inputs a score is never NaN (no inf - inf, no 0 x inf)."""
    if not np.isfinite(bound) or q.size == 0:
        return q.size == 0
    l1 = np.abs(q).sum(axis=1, dtype=np.float64).max()
    return bool(np.isfinite(l1) and l1 * bound < _SAFE)


#: half the largest float32: products and sums below it stay finite
_SAFE = float(np.finfo(np.float32).max) / 2


def search_args(
    queries: np.ndarray, k: int, exclude: Ragged | None, *, dim: int, measure: str
) -> tuple[np.ndarray, int]:
    """Validate a ``search`` call (shared by every index): (B, dim) float32 queries, unit-normalised for
    cosine, and k as an int."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise InvalidParameterError(f"queries must have shape (batch, {dim}); received {q.shape}.")
    k = check_positive_int("k", k)
    if exclude is not None and len(exclude) != q.shape[0]:
        raise InvalidParameterError(
            f"exclude must have one row per query ({q.shape[0]}); received {len(exclude)} rows."
        )
    return (normalize_rows(q) if measure == "cosine" else q), k


def _mask_block(
    s: torch.Tensor, excl: tuple[torch.Tensor, torch.Tensor] | None, b0: int, b1: int
) -> None:
    """-inf in place at the excluded (query row, position) pairs ``excl`` that fall in the block of
    positions [b0, b1) whose scores ``s`` holds."""
    if excl is None:
        return
    r, p = excl
    sel = (p >= b0) & (p < b1)
    if sel.any():
        s[r[sel], p[sel] - b0] = -torch.inf


def topk_lowest_first(
    s: torch.Tensor, k: int, *, nan_free: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) values and column positions of each row's k largest entries of ``s``, best first, equal
    values by the lower position first (embrec's tie rule; ``torch.topk`` alone leaves ties unordered).
    NaN ranks last; ``nan_free`` says the caller knows ``s`` holds none (the scan for it is skipped)."""
    if not nan_free and torch.isnan(s).any():
        s = torch.nan_to_num(
            s, nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf
        )  # infinities kept
    n = s.shape[1]
    top, top_pos = torch.topk(s, min(k + 1, n), dim=1)  # (B, k+1) best values, ties unordered
    if k == n or bool((top[:, k - 1] > top[:, k]).all()):
        # fast path: no tie straddles the k-th place, so the k best are fixed; order ties among them
        pos, _ = torch.sort(top_pos[:, :k], dim=1)  # (B, k) ascending positions
        vals = torch.gather(s, 1, pos)
        vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
        return vals, torch.gather(pos, 1, order)
    kth = top[:, k - 1 : k]  # (B, 1) the k-th best value
    take = s >= kth  # (B, n): exactly k per row unless ties straddle the k-th place
    fix = torch.nonzero(take.sum(dim=1) > k)[:, 0]
    if fix.numel():  # those rows only: keep the lowest tied positions
        sub, edge = s[fix], kth[fix]
        tied = sub == edge
        need = k - (sub > edge).sum(dim=1, keepdim=True)
        take[fix] = (sub > edge) | (tied & (torch.cumsum(tied.to(torch.int32), dim=1) <= need))
    pos = torch.nonzero(take)[:, 1].reshape(s.shape[0], k)  # ascending positions per row
    vals = torch.gather(s, 1, pos)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(pos, 1, order)


class ExactIndex:
    """Brute-force maximum inner product (or cosine) search, exact, streamed in blocks.

    >>> index = ExactIndex(measure="cosine").index(item_vectors, ids=item_rows)
    >>> ids, scores = index.search(query_vectors, k=10, exclude=seen)   # (B, k) each
    """

    def __init__(
        self,
        *,
        measure: str = "dot",
        block_size: int = 32768,
        query_batch: int = 2048,
        device: str | None = None,
    ) -> None:
        self.measure = check_choice("measure", measure, MEASURES)
        self.block_size = check_positive_int("block_size", block_size)
        self.query_batch = check_positive_int("query_batch", query_batch)
        self.device = torch.device(device or "cpu")
        self._emb: torch.Tensor | None = None
        self._emb_t: np.ndarray | None = None

    def is_exact(self) -> bool:
        return True

    def __len__(self) -> int:
        return 0 if self._emb is None else int(self._emb.shape[0])

    def index(self, embeddings: np.ndarray, ids: np.ndarray | None = None) -> ExactIndex:
        """Store (n, d) candidate vectors and their integer ids (default 0..n-1)."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise InvalidParameterError(
                f"embeddings must be a non-empty 2-D array (n_items, dim); received shape {emb.shape}."
            )
        ids = (
            np.arange(emb.shape[0], dtype=np.int64)
            if ids is None
            else np.asarray(ids, dtype=np.int64)
        )
        if ids.shape != (emb.shape[0],):
            raise InvalidParameterError(
                f"ids must have shape ({emb.shape[0]},) to match embeddings; received {ids.shape}."
            )
        if self.measure == "cosine":
            emb = normalize_rows(emb)
        # stored transposed, (d, n) C-contiguous: a query batch is then (B, d) @ (d, n), which BLAS runs
        # fastest (measured: 17 µs against 24 µs for (1, 64) @ (3000, 64).T); torch sees the (n, d) view
        emb_t = np.ascontiguousarray(emb.T)
        self._emb = torch.from_numpy(emb_t).T.to(self.device)  # (n, d)
        self._emb_t = (
            emb_t if self.device.type == "cpu" else None
        )  # the same memory, for the numpy path
        # the largest |entry| (inf when any is not finite): lets search skip the NaN scan of its scores
        self._bound = float(np.abs(emb).max()) if np.isfinite(emb).all() else np.inf
        self._ids = ids
        self._pos_of = np.full(int(ids.max()) + 1 if ids.size else 1, -1, dtype=np.int64)
        self._pos_of[ids] = np.arange(ids.size)
        return self

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Ragged | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and scores (B, k) per query row, best first; ``exclude`` holds ids per query
        that must not be returned, ``allow`` (1-D ids, shared by every query) the only ids that may be.
        Both act inside the streamed top-k, so k results come back whenever k allowed, non-excluded ids
        exist. Slots with nothing left to return get id -1 and score -inf."""
        if self._emb is None:
            raise NotFittedError(
                "this index is empty; call index(embeddings, ids) before search()."
            )
        q, k = search_args(queries, k, exclude, dim=self._emb.shape[1], measure=self.measure)
        cand = allowed_positions(allow, self._pos_of)  # None, or ascending positions searched alone
        cand_t = None if cand is None else torch.from_numpy(cand).to(self.device)
        n = self._emb.shape[0] if cand is None else cand.size
        if n == 0:
            return np.full((q.shape[0], k), -1, dtype=np.int64), np.full(
                (q.shape[0], k), -np.inf, np.float32
            )
        kk = min(k, n)
        if self._emb_t is not None and n <= self.block_size and q.shape[0] <= self.query_batch:
            # one block, one query batch (a served request): numpy end to end, no merge step
            s = q @ (self._emb_t if cand is None else self._emb_t[:, cand])  # (B, n)
            excl = self._exclusions(exclude, 0, q.shape[0], cand, numpy=True)
            if excl is not None:
                s[excl] = -np.inf
            pos, top = top_k_rows(s, kk)
            if cand is not None:
                pos = cand[pos]
            if kk < k:
                pos = np.hstack([pos, np.full((q.shape[0], k - kk), -1, dtype=np.int64)])
                top = np.hstack([top, np.full((q.shape[0], k - kk), -np.inf, dtype=np.float32)])
            return self._ids_of(pos, top)
        kernels = compiled.kernels() if self.device.type == "cpu" else None
        if kernels is not None:
            return self._search_compiled(kernels, q, k, kk, n, exclude, cand, cand_t)
        out_pos = np.full((q.shape[0], k), -1, dtype=np.int64)
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        for start in range(0, q.shape[0], self.query_batch):
            stop = min(start + self.query_batch, q.shape[0])
            qb = torch.from_numpy(q[start:stop]).to(self.device)
            # finite vectors too small to overflow give no NaN score: no scan of every block for one
            # (a third of the exact search's time at 100k items, measured)
            nan_free = cannot_overflow(q[start:stop], self._bound)
            excl = self._exclusions(exclude, start, stop, cand)
            best_s = torch.full((stop - start, kk), -torch.inf, device=self.device)
            best_p = torch.full((stop - start, kk), -1, dtype=torch.int64, device=self.device)
            for b0 in range(0, n, self.block_size):
                b1 = min(b0 + self.block_size, n)
                blk = self._emb[b0:b1] if cand_t is None else self._emb[cand_t[b0:b1]]
                s = (
                    qb @ blk.T
                )  # (Bq, blk); positions below are local to the candidates when restricted
                _mask_block(s, excl, b0, b1)
                # the block's own top-k first, then a merge of 2k candidates (ties: lower position first)
                blk_s, blk_p = topk_lowest_first(s, min(kk, b1 - b0), nan_free=nan_free)  # (Bq, k)
                cand_s = torch.cat(
                    [best_s, blk_s], dim=1
                )  # (Bq, 2k); best's positions all precede the block's
                cand_p = torch.cat([best_p, blk_p + b0], dim=1)
                best_s, top = torch.sort(cand_s, dim=1, descending=True, stable=True)
                best_s, best_p = best_s[:, :kk], torch.gather(cand_p, 1, top[:, :kk])
            out_s[start:stop, :kk] = best_s.cpu().numpy()
            best_p = best_p.cpu().numpy()
            if cand is not None:
                best_p = np.where(best_p >= 0, cand[np.maximum(best_p, 0)], -1)
            out_pos[start:stop, :kk] = best_p
        return self._ids_of(out_pos, out_s)

    def _search_compiled(
        self,
        kernels,
        q: np.ndarray,
        k: int,
        kk: int,
        n: int,
        exclude: Ragged | None,
        cand: np.ndarray | None,
        cand_t: torch.Tensor | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The streamed search on CPU with the compiled running top k (``kernels.top_k_update``): tiles
        of at most ``TILE_QUERIES`` x ``TILE_ITEMS`` scores (8 MB, so the product's output is still in
        cache when the selection reads it), no per-block sort or merge, no NaN scan (NaN never enters).
        The same ids and scores as the PyTorch path (tests/test_ties.py)."""
        out_pos = np.full((q.shape[0], k), -1, dtype=np.int64)
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        tq, ti = min(self.query_batch, TILE_QUERIES), min(self.block_size, TILE_ITEMS)
        for start in range(0, q.shape[0], tq):
            stop = min(start + tq, q.shape[0])
            qb = torch.from_numpy(q[start:stop])
            excl = self._exclusions(exclude, start, stop, cand)
            vals, pos = out_s[start:stop, :kk], out_pos[start:stop, :kk]
            for b0 in range(0, n, ti):
                b1 = min(b0 + ti, n)
                blk = self._emb[b0:b1] if cand_t is None else self._emb[cand_t[b0:b1]]
                s = qb @ blk.T  # (Bq, blk); positions local to the candidates when restricted
                _mask_block(s, excl, b0, b1)
                kernels.top_k_update(s.numpy(), b0, vals, pos)
        if cand is not None:
            out_pos = np.where(out_pos >= 0, cand[np.maximum(out_pos, 0)], -1)
        return self._ids_of(out_pos, out_s)

    def _ids_of(self, pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index positions -> ids; slots without a finite score become id -1, score -inf."""
        valid = np.isfinite(scores)
        if (
            valid.all()
        ):  # every slot filled (the usual case; an empty slot, position -1, scores -inf)
            return self._ids[pos], scores.astype(np.float32, copy=False)
        valid &= pos >= 0
        ids = np.where(valid, self._ids[np.maximum(pos, 0)], -1)
        return ids, np.where(valid, scores, -np.inf).astype(np.float32)

    def _exclusions(
        self,
        exclude: Ragged | None,
        start: int,
        stop: int,
        cand: np.ndarray | None,
        *,
        numpy: bool = False,
    ):
        """(query rows, positions) to mask in queries start..stop: torch tensors, or numpy arrays."""
        if exclude is None:
            return None
        part = (
            exclude
            if start == 0 and stop == len(exclude)
            else exclude.select(np.arange(start, stop))
        )
        if part.values.size == 0:
            return None
        ids = part.values
        if (
            int(ids.view(np.uint64).max()) < self._pos_of.size
        ):  # every id in range (as uint64, a negative is huge)
            pos = self._pos_of[ids]
        else:
            known = (ids >= 0) & (ids < self._pos_of.size)
            pos = np.full(ids.size, -1, dtype=np.int64)
            pos[known] = self._pos_of[ids[known]]
        if (
            cand is not None
        ):  # global positions -> places among the candidates (others cannot come back)
            at = np.minimum(np.searchsorted(cand, pos), max(cand.size - 1, 0))
            pos = np.where((pos >= 0) & (cand[at] == pos), at, -1)
        keep = pos >= 0
        if numpy:
            rows = 0 if len(part) == 1 else part.row_ids  # one query: s[0, pos]
            if keep.all():
                return rows, pos
            return (rows if len(part) == 1 else rows[keep]), pos[keep]
        return (
            torch.from_numpy(part.row_ids[keep]).to(self.device),
            torch.from_numpy(pos[keep]).to(self.device),
        )
