"""The shared machinery of the gradient-trained implicit factorization models (implicit MF, BPR).

Score of user u for item i::

    s(u, i) = p_u · q_i + b_i  (+ b_u + b, which do not change a user's ranking)

Retrieval uses ``query = [p_u, 1]`` and ``candidate = [q_i, b_i]``, so an index's dot product equals
the model's ranking score exactly. A user never seen in training (row 0) is folded in: with the item
factors and biases fixed, the user's own part of the training objective (the expectation over the
negative sampler, so no sampling noise) is minimised over ``p_u`` (and ``b_u``): a closed-form start
(the minimiser of a quadratic expansion of that objective, a weighted ridge regression on the item
factors) and a few BFGS steps on the user's own convex objective from there, gradients only
(``embrec.models.foldin.quasi_newton``).
The objective adds a Gaussian prior fitted to the trained users' vectors (their mean and covariance),
at a weight chosen once per model by self-consistency on training users (``calibrate_fold_in``):
without it the exact optimum of a weakly regularised loss overfits a short history (measured on a
3,000-item shop: BPR top-10 overlap with the stored users 0.59, implicit MF 0.28, against 0.69 / 0.52
for the old, accidentally early-stopped L-BFGS; with it 0.71 / 0.81). Users are solved independently,
so a user's vector never depends on who else is in the call.

Subclasses give the per-batch loss (``_batch_loss``), the epoch's batches (``_epoch_batches``) and the
fold-in's start and objective's gradient (``_fold_in_start``, ``_fold_in_grad``); this file holds the
rest.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError
from embrec.memory import check_tables
from embrec.models.base import EmbeddingModel, Recommender, top_k_rows
from embrec.models.distributed import local_events, world
from embrec.models.foldin import distinct_items, one_blas_thread, quasi_newton, spd_inverse
from embrec.models.training import (
    Batches,
    TrainConfig,
    make_optimizer,
    n_batches,
    resolve_device,
    seeded,
    step_floor_batch,
    train_loop,
)
from embrec.nn.sampling import ItemSampler

logger = logging.getLogger(__name__)

#: candidate weights of the fold-in's Gaussian user prior (``SampledFactorization.calibrate_fold_in``)
PRIOR_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)


class BiasedDot(torch.nn.Module):
    """User and item factors (rows 0 = padding) with item, user and global biases."""

    def __init__(self, n_users: int, n_items: int, factors: int, init_std: float) -> None:
        super().__init__()
        check_tables("factors", factors, {"user": n_users, "item": n_items})
        self.user_factors = torch.nn.Parameter(torch.randn(n_users, factors) * init_std)  # (U, d)
        self.item_factors = torch.nn.Parameter(torch.randn(n_items, factors) * init_std)  # (I, d)
        self.user_bias = torch.nn.Parameter(torch.zeros(n_users))  # (U,)
        self.item_bias = torch.nn.Parameter(torch.zeros(n_items))  # (I,)
        self.global_bias = torch.nn.Parameter(torch.zeros(()))


class SampledFactorization(EmbeddingModel):
    """Base of ImplicitMF and BPR. Subclasses store their hyper-parameters in ``__init__`` with at least
    factors, epochs, batch_size, min_steps, lr, reg, neg_alpha, init_std, history_weight, fold_in_steps, valid_k,
    valid_exclude_seen, patience, device, seed, progress.

    ``min_steps`` is the fewest Adam steps a fit takes: on a log so small that ``epochs`` passes in batches
    of ``batch_size`` would take fewer, the batches shrink until it takes that many
    (``embrec.models.training.step_floor_batch``; from ~45k training events up nothing changes). Chosen
    on ``implicit``'s own 50 x 50 checkerboard (1,200 events, the diagonal held out;
    tests/test_peer_contract.py at defaults): 10 steps of implicit MF ranked the held-out item first for
    14 of 50 users, 100 steps for all 50. On the few-users validation part (ml-few: three logs of ~33k
    events, 943 users, hit@10 about +-0.02) the floor of 100 moved implicit MF by -0.004 and BPR by +0.014,
    both within noise (docs/benchmarks.md, "min_steps")."""

    #: does the fold-in objective use (and fit) a user bias?
    _fold_in_user_bias = False

    # training ---------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        known = train.user > 0
        if not known.any():
            raise DataError(
                "train must hold at least one event of a known user; every user id is missing."
            )
        # every user known (the usual case): the log's own columns, read only, not copies (16 bytes an event)
        every = bool(known.all())
        self.pos_users_ = train.user if every else train.user[known]
        self.pos_items_ = train.item if every else train.item[known]
        self.pos_users_, self.pos_items_ = self._positives(self.pos_users_, self.pos_items_)
        # a log too small for epochs x batches to reach min_steps Adam steps trains in smaller batches
        self.fit_batch_size_ = step_floor_batch(
            self.batch_size, self.pos_users_.size, self.epochs, self.min_steps, ranks=world().size
        )
        mine = local_events(self.pos_users_)  # under torch.distributed: this rank's users' events
        if mine is not None:
            self.pos_users_, self.pos_items_ = self.pos_users_[mine], self.pos_items_[mine]
        self.sampler_ = ItemSampler.popularity(self.item_counts_, alpha=self.neg_alpha)
        device = resolve_device(self.device)
        config = TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            optimizer="adam",
            patience=self.patience,
            progress=self.progress,
        )
        with seeded(self.seed) as rng:
            module = BiasedDot(self.users_.size, self.items_.size, self.factors, self.init_std).to(
                device
            )
            self._prepare(rng)
            # validation drives early stopping (and the best-epoch restore) only when patience is set
            validate = (
                self._validator(module, valid) if valid is not None and self.patience else None
            )
            # the batch losses give sparse row gradients of the four tables: RowAdam moves the drawn rows
            tables = (module.user_factors, module.item_factors, module.user_bias, module.item_bias)
            self.history_ = train_loop(
                module,
                batches=lambda r, e: Batches(
                    self._to_device(self._epoch_batches(r, e), device),
                    n_batches(self.pos_users_.size, self.fit_batch_size_),
                ),
                loss=lambda batch: self._batch_loss(module, batch),
                config=config,
                rng=rng,
                validate=validate,
                desc=type(self).__name__,
                optimizer=make_optimizer(module.parameters(), config, sparse=tables),
            )
        self._store(module)
        # users of the vocabulary without a training event keep no random factors: they score by item bias
        idle = np.bincount(train.user[known], minlength=self.users_.size) == 0
        self.user_factors_[idle] = 0.0
        self.user_bias_[idle] = 0.0
        for name in ("pos_users_", "pos_items_", "seen_pairs_", "_row_maps", "fit_batch_size_"):
            self.__dict__.pop(name, None)
        self.fold_in_prior_ = None
        self.calibrate_fold_in()

    def _positives(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positives an epoch draws from, over the whole log (before each rank keeps its own users'):
        the known users' events; the floor of ``min_steps`` is computed from their count."""
        return users, items

    def _prepare(self, rng: np.random.Generator) -> None:
        """Hook run once before training (e.g. the seen-pair keys of BPR's negative check)."""

    @abstractmethod
    def _epoch_batches(
        self, rng: np.random.Generator, epoch: int
    ) -> Iterator[tuple[np.ndarray, ...]]:
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
        self.__dict__.pop("_fold_in_ctx", None)

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
        return np.hstack([self.item_factors_, self.item_bias_[:, None]]).astype(
            np.float32
        )  # (I, d + 1)

    # the user's own history ------------------------------------------------------------------
    # With ``history_weight`` w > 0 the ranking score of item i for a user with history H is
    #     z(u, i) + w * log(1 + times i occurs in H),     z = s(u, i) / std_j s(u, j)
    # (dividing by the spread of the user's scores puts every user's MF score on one scale; the std
    # comes from the candidates' covariance, so no users x items matrix is formed). Retrieval stays
    # exact: an item outside H keeps its MF order, so the top k is among the index's top k and H.
    def _score_scale(self, q: np.ndarray) -> np.ndarray:
        """(B,) standard deviation over items of each query's retrieval scores."""
        if "_candidate_cov" not in self.__dict__:
            self._candidate_cov = np.cov(
                self._candidate_vectors()[1:].astype(np.float64), rowvar=False, bias=True
            )
        var = np.einsum(
            "bi,ij,bj->b", q.astype(np.float64), self._candidate_cov, q.astype(np.float64)
        )
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

    def top_k(
        self,
        user_rows: np.ndarray,
        histories: Ragged,
        k: int,
        *,
        exclude: Ragged | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self.history_weight:
            return super().top_k(user_rows, histories, k, exclude=exclude, allow=allow)
        if allow is not None:  # restricted: score the (bonus-including) dense scores, masked
            return Recommender.top_k(self, user_rows, histories, k, exclude=exclude, allow=allow)
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
        bonus = (q[rows] * cand[items]).sum(1) / scale[rows] + self.history_weight * np.log1p(
            counts
        )
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
    @one_blas_thread
    def fold_in(self, histories: Ragged) -> tuple[np.ndarray, np.ndarray]:
        """(B, d) user factors and (B,) user biases fitted to each history (item rows) with the item
        side fixed: each user's own expected training objective (``_fold_in_grad``) plus the Gaussian
        user prior, minimised by BFGS (at most ``fold_in_steps`` steps, gradients only) from its
        closed-form start and that start's Hessian (``_fold_in_start``), users solved independently.
        Deterministic, and a batch gives exactly what one-at-a-time calls give."""
        b = len(histories)
        d = self.item_factors_.shape[1]
        if b == 0:
            return np.zeros((0, d), dtype=np.float32), np.zeros(0, dtype=np.float32)
        ctx = self._fold_in_context()
        prec, prec_mean = self._prior_terms(ctx)
        users = [
            (items, self._fold_in_weights(counts).astype(np.float64))
            for items, counts in distinct_items(histories)
        ]
        start, inv = [], []
        for items, w in users:  # one Newton step on the quadratic model, prior included
            z0, g0, h0 = self._fold_in_start(ctx, items, w)
            inv.append(spd_inverse(h0 + prec))
            start.append(z0 - inv[-1] @ (g0 + prec @ z0 - prec_mean))
        # the objectives grow with the history's weight
        scale = np.array([w.sum() for _, w in users])
        # per-user arrays the gradient builds once
        works: list[dict[str, Any]] = [{} for _ in users]

        def gradient(u: int, x: np.ndarray) -> np.ndarray:
            g = self._fold_in_grad(ctx, users[u][0], users[u][1], x, works[u])
            return g + (prec @ x - prec_mean)

        z = quasi_newton(gradient, np.stack(start), np.stack(inv), scale, steps=self.fold_in_steps)
        factors = z[:, :d].astype(np.float32)
        biases = (z[:, d] if z.shape[1] > d else np.zeros(b)).astype(np.float32)
        return factors, biases

    def _fold_in_context(self) -> dict[str, Any]:
        """Item-side arrays every fold-in reads, built once per model (dropped when factors change):
        the item table and biases as contiguous float32, the sampler, the user prior, the model-level
        catalogue sums of ``_fold_in_moments`` and a per-thread scratch buffer."""
        ctx = self.__dict__.get("_fold_in_ctx")
        if ctx is None:
            ctx = {
                "q": np.ascontiguousarray(self.item_factors_, dtype=np.float32),  # (I, d)
                "bias": (self.item_bias_ + self.global_bias_).astype(np.float32),  # (I,)
                "probs": self.sampler_probabilities().astype(np.float32),  # (I,)
                "scratch": threading.local(),
                "prior_terms": {},
            }
            ctx["prior_mean"], ctx["prior_precision"] = self._user_prior()
            ctx.update(self._fold_in_moments(ctx))
            self._fold_in_ctx = ctx
        return ctx

    def _prior_terms(self, ctx: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(P, P·m): the prior's precision at the calibrated weight and its product with the prior
        mean, kept in ctx per weight (calibration tries several)."""
        weight = self._prior_weight()
        terms = ctx["prior_terms"].get(weight)
        if terms is None:
            prec = weight * ctx["prior_precision"]
            terms = ctx["prior_terms"][weight] = (prec, prec @ ctx["prior_mean"])
        return terms

    def _prior_weight(self) -> float:
        """The weight of the user prior, calibrated once per model (``calibrate_fold_in``)."""
        if getattr(self, "fold_in_prior_", None) is None:
            self.calibrate_fold_in()
        return self.fold_in_prior_

    def calibrate_fold_in(self, n_users: int = 50, k: int = 10) -> float:
        """Choose the weight of the Gaussian user prior in the fold-in objective from PRIOR_WEIGHTS by
        self-consistency on training data only: the weight whose fold-in of ``n_users`` training users'
        own histories (seeded sample) best reproduces their stored top-``k`` (unseen items). A sampled
        training loss is a likelihood only up to a scale (BPR's expected pairwise loss counts one
        negative per positive), so the prior's weight cannot be read off the loss; this procedure fixes
        it on the model's own users. Stored with the model (``fold_in_prior_``)."""
        users = np.flatnonzero(self.seen_.lengths > 0)
        users = users[users > 0]
        rng = np.random.default_rng(self.seed)
        users = np.sort(rng.choice(users, min(n_users, users.size), replace=False))
        hist = self.seen_.select(users)
        stored, _ = self.top_k(users, hist, k, exclude=hist)
        best, best_overlap = PRIOR_WEIGHTS[0], -1.0
        for weight in PRIOR_WEIGHTS:
            self.fold_in_prior_ = weight
            folded, _ = self.top_k(np.zeros_like(users), hist, k, exclude=hist)
            overlap = float(
                np.mean([np.intersect1d(a[a > 0], b[b > 0]).size for a, b in zip(stored, folded)])
            )
            if overlap > best_overlap:
                best, best_overlap = weight, overlap
        self.fold_in_prior_ = best
        logger.info(
            "fold-in prior weight %s (top-%d overlap %.2f on %d training users)",
            best,
            k,
            best_overlap / k,
            users.size,
        )
        return best

    def _user_prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and precision of the trained users' [p_u (, b_u)]: the Gaussian prior of the fold-in."""
        z = self.user_factors_
        if self._fold_in_user_bias:
            z = np.hstack([z, self.user_bias_[:, None]])
        z = z[np.abs(z).sum(1) > 0].astype(np.float64)  # users with training events
        if len(z) < 2:
            return np.zeros(z.shape[1]), np.zeros((z.shape[1], z.shape[1]))
        cov = np.cov(z, rowvar=False) + 1e-6 * np.eye(z.shape[1])
        return z.mean(0), np.linalg.inv(cov)

    def _fold_in_moments(self, ctx: dict[str, Any]) -> dict[str, Any]:
        """Model-level sums over the catalogue the closed-form start needs (per model, not per call)."""
        return {}

    def _fold_in_weights(self, counts: np.ndarray) -> np.ndarray:
        """(P,) float32 weight of each distinct history item in the fold-in objective (its count)."""
        return counts.astype(np.float32)

    def sampler_probabilities(self) -> np.ndarray:
        """(I,) the negative sampler's distribution (rebuilt from item counts after loading)."""
        if not hasattr(self, "sampler_"):
            self.sampler_ = ItemSampler.popularity(self.item_counts_, alpha=self.neg_alpha)
        return self.sampler_.probabilities()

    @abstractmethod
    def _fold_in_start(
        self, ctx: dict[str, Any], items: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z0, gradient, Hessian), float64: a quadratic model of ONE user's objective (without the
        prior) around the expansion point z0; one Newton step on it, prior included, is the
        closed-form start, and its Hessian (+ the prior's) starts BFGS."""

    @abstractmethod
    def _fold_in_grad(
        self,
        ctx: dict[str, Any],
        items: np.ndarray,
        w: np.ndarray,
        z: np.ndarray,
        work: dict[str, Any],
    ) -> np.ndarray:
        """Gradient (float64) at z of ONE user's expected training objective; ``work`` is that user's
        own dict (empty on the first call) for arrays that do not change with z."""

    # persistence ------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
            "global_bias": np.array([self.global_bias_], dtype=np.float32),
        }

    def _get_extra(self) -> dict[str, Any]:
        return {"fold_in_prior": self.fold_in_prior_}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        # None (an older save): calibrated on first use
        self.fold_in_prior_ = extra.get("fold_in_prior")
        shapes = {
            "user_factors": (self.users_.size, self.factors),
            "item_factors": (self.items_.size, self.factors),
            "user_bias": (self.users_.size,),
            "item_bias": (self.items_.size,),
            "global_bias": (1,),
        }
        for name, shape in shapes.items():
            if state[name].shape != shape:
                raise ValueError(f"{name} has shape {state[name].shape}, expected {shape}")
        self.user_factors_ = state["user_factors"].astype(np.float32)
        self.item_factors_ = state["item_factors"].astype(np.float32)
        self.user_bias_ = state["user_bias"].astype(np.float32)
        self.item_bias_ = state["item_bias"].astype(np.float32)
        self.global_bias_ = float(state["global_bias"][0])
        self.__dict__.pop("_candidate_cov", None)
        self.__dict__.pop("_fold_in_ctx", None)


def _positions(r: Ragged) -> np.ndarray:
    """(nnz,) the position of every value inside its row."""
    return np.arange(r.values.size, dtype=np.int64) - np.repeat(r.offsets[:-1], r.lengths)
