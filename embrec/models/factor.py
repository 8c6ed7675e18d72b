"""The shared machinery of the gradient-trained implicit factorization models (implicit MF, BPR).

Score of user u for item i::

    s(u, i) = p_u · q_i + b_i  (+ b_u + b, which do not change a user's ranking)

Retrieval uses ``query = [p_u, 1]`` and ``candidate = [q_i, b_i]``, so an index's dot product equals
the model's ranking score exactly. A user never seen in training (row 0) is folded in: with the item
factors and biases fixed, the user's own part of the training objective (the expectation over the
negative sampler, so no sampling noise) is minimised over ``p_u`` (and ``b_u``) by full-batch L-BFGS
from zero, a deterministic handful of gradient steps.

Subclasses give the per-batch loss (``_batch_loss``), the epoch's batches (``_epoch_batches``) and the
fold-in objective (``_fold_in_objective``); this file holds the rest.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError
from embrec.models.base import EmbeddingModel, top_k_rows
from embrec.models.training import (
    Batches,
    TrainConfig,
    n_batches,
    resolve_device,
    seeded,
    train_loop,
)
from embrec.nn.sampling import ItemSampler

logger = logging.getLogger(__name__)

#: fold-in works on chunks of users whose (history pairs x items) stays below this many scores
_FOLD_IN_CELLS = 2**23


class BiasedDot(torch.nn.Module):
    """User and item factors (rows 0 = padding) with item, user and global biases."""

    def __init__(self, n_users: int, n_items: int, factors: int, init_std: float) -> None:
        super().__init__()
        self.user_factors = torch.nn.Parameter(torch.randn(n_users, factors) * init_std)  # (U, d)
        self.item_factors = torch.nn.Parameter(torch.randn(n_items, factors) * init_std)  # (I, d)
        self.user_bias = torch.nn.Parameter(torch.zeros(n_users))  # (U,)
        self.item_bias = torch.nn.Parameter(torch.zeros(n_items))  # (I,)
        self.global_bias = torch.nn.Parameter(torch.zeros(()))


class SampledFactorization(EmbeddingModel):
    """Base of ImplicitMF and BPR. Subclasses store their hyper-parameters in ``__init__`` with at least
    factors, epochs, batch_size, lr, reg, neg_alpha, init_std, history_weight, fold_in_steps, valid_k,
    valid_exclude_seen, patience, device, seed, progress."""

    #: does the fold-in objective use (and fit) a user bias?
    _fold_in_user_bias = False

    # training ---------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        known = train.user > 0
        if not known.any():
            raise DataError("train must hold at least one event of a known user; every user id is missing.")
        self.pos_users_ = train.user[known]
        self.pos_items_ = train.item[known]
        self.sampler_ = ItemSampler.popularity(self.item_counts_, alpha=self.neg_alpha)
        device = resolve_device(self.device)
        config = TrainConfig(epochs=self.epochs, lr=self.lr, optimizer="adam", patience=self.patience,
                             progress=self.progress)
        with seeded(self.seed) as rng:
            module = BiasedDot(self.users_.size, self.items_.size, self.factors, self.init_std).to(device)
            self._prepare(rng)
            # validation drives early stopping (and the best-epoch restore) only when patience is set
            validate = self._validator(module, valid) if valid is not None and self.patience else None
            self.history_ = train_loop(
                module,
                batches=lambda r, e: Batches(self._to_device(self._epoch_batches(r, e), device),
                                             n_batches(self.pos_users_.size, self.batch_size)),
                loss=lambda batch: self._batch_loss(module, batch),
                config=config, rng=rng, validate=validate, desc=type(self).__name__)
        self._store(module)
        # users of the vocabulary without a training event keep no random factors: they score by item bias
        idle = np.bincount(self.pos_users_, minlength=self.users_.size) == 0
        self.user_factors_[idle] = 0.0
        self.user_bias_[idle] = 0.0
        for name in ("pos_users_", "pos_items_", "seen_pairs_"):
            self.__dict__.pop(name, None)

    def _prepare(self, rng: np.random.Generator) -> None:
        """Hook run once before training (e.g. the seen-pair keys of BPR's negative check)."""

    @abstractmethod
    def _epoch_batches(self, rng: np.random.Generator, epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        """Batches of numpy arrays (users, positives, negatives (B, K)) for one epoch."""

    @abstractmethod
    def _batch_loss(self, module: BiasedDot, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The scalar training loss of one batch."""

    @staticmethod
    def _to_device(batches, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
        for batch in batches:
            yield tuple(torch.from_numpy(a).to(device) for a in batch)

    def _store(self, module: BiasedDot) -> None:
        self.user_factors_ = module.user_factors.detach().cpu().numpy().copy()
        self.item_factors_ = module.item_factors.detach().cpu().numpy().copy()
        self.user_bias_ = module.user_bias.detach().cpu().numpy().copy()
        self.item_bias_ = module.item_bias.detach().cpu().numpy().copy()
        self.global_bias_ = float(module.global_bias.detach().cpu())
        self.__dict__.pop("_indexes", None)
        self.__dict__.pop("_candidate_cov", None)

    def _validator(self, module: BiasedDot, valid: Interactions):
        """precision@valid_k on the validation events of known users (training items excluded when
        ``valid_exclude_seen``): the early-stopping metric when ``patience`` is set (a cheap per-epoch
        proxy, not an evaluation protocol)."""
        mask = (valid.user > 0) & (valid.item > 0)
        if not mask.any():
            return None
        users = np.unique(valid.user[mask])
        relevant = Ragged.group(valid.user[mask], valid.item[mask], self.users_.size).select(users)
        relevant = Ragged.from_lists([np.unique(r) for r in relevant])
        seen = self.seen_.select(users) if self.valid_exclude_seen else None
        k = self.valid_k

        def precision() -> float:
            p = module.user_factors.detach().cpu().numpy()
            q = module.item_factors.detach().cpu().numpy()
            b = module.item_bias.detach().cpu().numpy()
            hits = 0
            for s in range(0, users.size, 1024):
                rows = np.arange(s, min(s + 1024, users.size))
                sc = p[users[rows]] @ q.T + b  # (B, I)
                sc[:, 0] = -np.inf
                if seen is not None:
                    part = seen.select(rows)
                    sc[part.row_ids, part.values] = -np.inf
                top, _ = top_k_rows(sc, k)  # (B, k)
                rel = relevant.select(rows)
                hits += int((top[rel.row_ids] == rel.values[:, None]).any(axis=1).sum())
            return hits / (users.size * k)

        return precision

    # embeddings -------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        user_rows = np.asarray(user_rows, dtype=np.int64)
        out = self.user_factors_[user_rows].copy()  # (B, d)
        new = np.flatnonzero(user_rows == 0)
        if new.size:
            out[new] = self.fold_in(histories.select(new))[0]
        return out

    def _query_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        u = self._user_vectors(user_rows, histories)
        return np.hstack([u, np.ones((u.shape[0], 1), dtype=u.dtype)])  # (B, d + 1)

    def _candidate_vectors(self) -> np.ndarray:
        return np.hstack([self.item_factors_, self.item_bias_[:, None]]).astype(np.float32)  # (I, d + 1)

    # the user's own history ------------------------------------------------------------------
    # With ``history_weight`` w > 0 the ranking score of item i for a user with history H is
    #     z(u, i) + w * log(1 + times i occurs in H),     z = s(u, i) / std_j s(u, j)
    # (dividing by the spread of the user's scores puts every user's MF score on one scale; the std
    # comes from the candidates' covariance, so no users x items matrix is formed). Retrieval stays
    # exact: an item outside H keeps its MF order, so the top k is among the index's top k and H.
    def _score_scale(self, q: np.ndarray) -> np.ndarray:
        """(B,) standard deviation over items of each query's retrieval scores."""
        if "_candidate_cov" not in self.__dict__:
            self._candidate_cov = np.cov(self._candidate_vectors()[1:].astype(np.float64), rowvar=False, bias=True)
        var = np.einsum("bi,ij,bj->b", q.astype(np.float64), self._candidate_cov, q.astype(np.float64))
        return np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)

    def _history_counts(self, histories: Ragged, exclude: Ragged | None = None):
        """(rows, items, counts) of the distinct items of each history, excluded ones dropped."""
        n = np.int64(self.items_.size)
        keys, counts = np.unique(histories.row_ids * n + histories.values, return_counts=True)
        if exclude is not None and exclude.values.size:
            keep = ~np.isin(keys, exclude.row_ids * n + exclude.values)
            keys, counts = keys[keep], counts[keep]
        return keys // n, keys % n, counts

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        q = self._query_vectors(user_rows, histories)
        scores = q @ self._candidate_vectors().T  # (B, I)
        if not self.history_weight:
            return scores
        scores /= self._score_scale(q)[:, None]
        rows, items, counts = self._history_counts(histories)
        scores[rows, items] += self.history_weight * np.log1p(counts)
        return scores

    def top_k(self, user_rows: np.ndarray, histories: Ragged, k: int, *,
              exclude: Ragged | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not self.history_weight:
            return super().top_k(user_rows, histories, k, exclude=exclude)
        q = self._query_vectors(user_rows, histories)  # (B, d + 1)
        found, scores = self.index_for("dot").search(q, k, exclude=exclude)  # (B, k) MF order
        scale = self._score_scale(q)
        scores = scores / scale[:, None]
        rows, items, counts = self._history_counts(histories, exclude)
        n = np.int64(self.items_.size)
        # index results that are history items come back below with their bonus
        in_hist = np.isin(np.arange(len(q))[:, None] * n + found, rows * n + items)
        scores[in_hist | (found < 0)] = -np.inf
        cand = self._candidate_vectors()
        bonus = (q[rows] * cand[items]).sum(1) / scale[rows] + self.history_weight * np.log1p(counts)
        hist = Ragged.group(rows, items, len(q))  # rows are sorted (from sorted keys): order kept
        h_items = hist.to_padded(pad=0)  # (B, H)
        h_scores = np.full(h_items.shape, -np.inf, dtype=np.float32)
        h_scores[hist.row_ids, _positions(hist)] = bonus
        all_items = np.hstack([np.maximum(found, 0), h_items])  # (B, k + H)
        all_scores = np.hstack([scores, h_scores])
        top, vals = top_k_rows(all_scores, k)
        out = np.take_along_axis(all_items, top, 1)
        out[~np.isfinite(vals)] = 0
        return out, vals

    # fold-in ----------------------------------------------------------------------------------
    def fold_in(self, histories: Ragged) -> tuple[np.ndarray, np.ndarray]:
        """(B, d) user factors and (B,) user biases fitted to each history (item rows) with the item
        side fixed. Deterministic: full-batch L-BFGS from zero on the expected training objective."""
        b = len(histories)
        factors = np.zeros((b, self.item_factors_.shape[1]), dtype=np.float32)
        biases = np.zeros(b, dtype=np.float32)
        if b == 0:
            return factors, biases
        q = torch.from_numpy(self.item_factors_)  # (I, d)
        bi = torch.from_numpy(self.item_bias_) + self.global_bias_  # (I,)
        probs = torch.from_numpy(self.sampler_probabilities().astype(np.float32))  # (I,)
        n_items = q.shape[0]
        start = 0
        while start < b:
            stop, cells = start, 0
            while stop < b and (stop == start or cells + len(np.unique(histories[stop])) * n_items <= _FOLD_IN_CELLS):
                cells += len(np.unique(histories[stop])) * n_items
                stop += 1
            part = histories.select(np.arange(start, stop))
            f, c = self._fold_in_chunk(part, q, bi, probs)
            factors[start:stop], biases[start:stop] = f, c
            start = stop
        return factors, biases

    def _fold_in_chunk(self, hist: Ragged, q: torch.Tensor, bi: torch.Tensor, probs: torch.Tensor):
        # unique (row, item) pairs with their multiplicities: a repeated purchase weighs as in training
        keys = hist.row_ids * q.shape[0] + hist.values
        uniq, counts = np.unique(keys, return_counts=True)
        rows = torch.from_numpy(uniq // q.shape[0])  # (P,)
        items = torch.from_numpy(uniq % q.shape[0])  # (P,)
        weights = torch.from_numpy(self._fold_in_weights(counts))  # (P,)
        b = len(hist)
        p = torch.zeros(b, q.shape[1], requires_grad=True)  # (B, d)
        c = torch.zeros(b, requires_grad=True)  # (B,)
        params = [p, c] if self._fold_in_user_bias else [p]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.fold_in_steps, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self._fold_in_objective(p, c, q, bi, probs, rows, items, weights)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return p.detach().numpy(), c.detach().numpy()

    def _fold_in_weights(self, counts: np.ndarray) -> np.ndarray:
        """(P,) float32 weight of each distinct history pair in the fold-in objective (its count)."""
        return counts.astype(np.float32)

    def sampler_probabilities(self) -> np.ndarray:
        """(I,) the negative sampler's distribution (rebuilt from item counts after loading)."""
        if not hasattr(self, "sampler_"):
            self.sampler_ = ItemSampler.popularity(self.item_counts_, alpha=self.neg_alpha)
        return self.sampler_.probabilities()

    @abstractmethod
    def _fold_in_objective(self, p: torch.Tensor, c: torch.Tensor, q: torch.Tensor, bi: torch.Tensor,
                           probs: torch.Tensor, rows: torch.Tensor, items: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
        """The summed training objective of B new users (factors p (B, d), biases c (B,)) whose
        history pairs are (rows, items) with multiplicities ``weights``, items fixed."""

    # persistence ------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "global_bias": np.array([self.global_bias_], dtype=np.float32)}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        shapes = {"user_factors": (self.users_.size, self.factors), "item_factors": (self.items_.size, self.factors),
                  "user_bias": (self.users_.size,), "item_bias": (self.items_.size,), "global_bias": (1,)}
        for name, shape in shapes.items():
            if state[name].shape != shape:
                raise ValueError(f"{name} has shape {state[name].shape}, expected {shape}")
        self.user_factors_ = state["user_factors"].astype(np.float32)
        self.item_factors_ = state["item_factors"].astype(np.float32)
        self.user_bias_ = state["user_bias"].astype(np.float32)
        self.item_bias_ = state["item_bias"].astype(np.float32)
        self.global_bias_ = float(state["global_bias"][0])
        self.__dict__.pop("_candidate_cov", None)


def _positions(r: Ragged) -> np.ndarray:
    """(nnz,) the position of every value inside its row."""
    return np.arange(r.values.size, dtype=np.int64) - np.repeat(r.offsets[:-1], r.lengths)
