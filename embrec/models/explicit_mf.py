"""Explicit matrix factorization (the recsys course colab, §III–V): ratings ≈ U·Vᵀ on observed entries.

    model = ExplicitMF(factors=128, l2=0.05, gravity=0.0).fit(train)         # train.rating is required
    model.predict(user_rows, item_rows)          # (n,) ratings on dense rows (row 0 -> the fallback)
    model.predict_ids(["196"], ["242"])          # the same on raw ids
    model.recommend(histories=[["50", "181"]], ratings=[[5, 4]], k=10)     # "add your own ratings"
    model.similar_items(["50"], measure="cosine")

Prediction: r̂(u, i) = μ + b_u + b_i + ⟨U_u, V_i⟩ (``biases=False``: ⟨U_u, V_i⟩ alone), clipped to the
training rating range. The objective (mini-batch B of observed ratings, see ``embrec.nn.regression``)::

    1/|B| Σ_B (r − r̂)²  +  l2 · 1/|B| Σ_B (‖U_u‖² + ‖V_i‖² + b_u² + b_i²)       # rows of the batch
                        +  table_l2 · (1/N Σ_u ‖U_u‖² + 1/M Σ_i ‖V_i‖² + …)     # the colab's r(U, V)
                        +  gravity · 1/(MN) Σ_u Σ_i ⟨U_u, V_i⟩²                  # the colab's g(U, V)

``l2`` weighs a row by how often it is rated (Funk-SVD style, what tunes best for RMSE); ``table_l2``
is the colab's uniform form. Trained with the shared loop (SGD by default), validation RMSE each epoch,
early stopping with best-weights restore. Without ``valid=``, a seeded ``valid_fraction`` of the
training ratings is held out for early stopping.

Fold-in (a user not seen in training): with V, the item biases and μ fixed, the user's own part of
the full-data objective is a ridge regression in x = [U_u, b_u] and is solved in closed form::

    (XᵀX + l2·n·I + table_l2·|Ω|/N·I + gravity·|Ω|/(MN)·[VᵀV 0; 0 0]) x = Xᵀ(r − μ − b_i),   X = [V_i, 1]

(n = the user's number of ratings, |Ω| = training ratings) — the same stationary point training seeks
for that user, so a training user's own ratings folded in give back (nearly) their trained vector.
A history given WITHOUT ratings is read as "items this user liked": every item is assumed rated
``history_rating`` (default: the highest rating seen in training, e.g. 5 on MovieLens).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, InvalidParameterError, check_float, check_positive_int
from embrec.memory import check_tables
from embrec.models.base import EmbeddingModel, Recommendations, with_denied
from embrec.models.distributed import local_events
from embrec.models.foldin import one_blas_thread
from embrec.models.search import FloatRange, IntRange, Param
from embrec.models.training import (
    Batches,
    TrainConfig,
    minibatches,
    n_batches,
    resolve_device,
    seeded,
    train_loop,
)
from embrec.nn.regression import RatingLoss, row_l2

logger = logging.getLogger(__name__)


class _MFNet(torch.nn.Module):
    """U, V (row 0 = padding, kept at zero), user/item biases and the global mean μ (a buffer)."""

    def __init__(self, n_users: int, n_items: int, factors: int, init_std: float, mean: float) -> None:
        super().__init__()
        check_tables("factors", factors, {"user": n_users, "item": n_items})
        self.user = torch.nn.Parameter(torch.randn(n_users, factors) * init_std)  # (N+1, d)
        self.item = torch.nn.Parameter(torch.randn(n_items, factors) * init_std)  # (M+1, d)
        self.user_bias = torch.nn.Parameter(torch.zeros(n_users))  # (N+1,)
        self.item_bias = torch.nn.Parameter(torch.zeros(n_items))  # (M+1,)
        self.register_buffer("mean", torch.tensor(float(mean)))
        with torch.no_grad():
            self.user[0].zero_()
            self.item[0].zero_()

    def forward(self, users: torch.Tensor, items: torch.Tensor, biases: bool) -> torch.Tensor:
        dot = (self.user[users] * self.item[items]).sum(-1)  # (B,)
        if not biases:
            return dot
        return self.mean + self.user_bias[users] + self.item_bias[items] + dot  # (B,)


class RatingSplit:
    """Observed ratings as tensors, with the validation slice (given, or carved from train)."""

    def __init__(self, train: Interactions, valid: Interactions | None, *, valid_fraction: float,
                 rng: np.random.Generator, device: torch.device) -> None:
        if train.rating is None:
            raise DataError("this model learns from explicit ratings; the training table has no rating column "
                            "(give rating_col= when reading the log).")
        keep = (train.user > 0) & (train.item > 0)
        u, i, r = train.user[keep], train.item[keep], train.rating[keep]
        if valid is None and valid_fraction > 0 and u.size >= 20:
            perm = rng.permutation(u.size)
            n_valid = max(1, int(round(valid_fraction * u.size)))
            vpos, tpos = perm[:n_valid], np.sort(perm[n_valid:])
            vu, vi, vr = u[vpos], i[vpos], r[vpos]
            u, i, r = u[tpos], i[tpos], r[tpos]
        elif valid is not None:
            if valid.rating is None:
                raise DataError("valid must have a rating column like train; received a table without ratings.")
            vkeep = (valid.user > 0) & (valid.item > 0)
            vu, vi, vr = valid.user[vkeep], valid.item[vkeep], valid.rating[vkeep]
        else:
            vu = vi = vr = np.zeros(0)
        t = lambda a, dt: torch.as_tensor(np.array(a, dtype=dt), device=device)  # noqa: E731
        self.all_rating = t(r, np.float32)  # every training rating (the statistics), on every rank
        mine = local_events(u)  # under torch.distributed: this rank's users' ratings are its batches
        if mine is not None:
            u, i, r = u[mine], i[mine], r[mine]
        self.user, self.item, self.rating = t(u, np.int64), t(i, np.int64), t(r, np.float32)
        self.valid_user, self.valid_item, self.valid_rating = t(vu, np.int64), t(vi, np.int64), t(vr, np.float32)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def has_valid(self) -> bool:
        return int(self.valid_user.shape[0]) > 0

    def batches(self, batch_size: int, *, random_pairs: tuple[int, int] | None = None):
        """``batches(rng, epoch)`` for ``train_loop``: shuffled (users, items, ratings) index triples; with
        ``random_pairs=(n_users, n_items)`` each batch also carries as many uniformly drawn (user, item)
        rows (1-based), for a sampled gravity term over all pairs."""
        def epoch_batches(rng: np.random.Generator):
            dev = self.user.device
            for pos in minibatches(len(self), batch_size, rng):
                p = torch.as_tensor(pos, device=dev)
                if random_pairs is None:
                    yield self.user[p], self.item[p], self.rating[p]
                else:
                    ru = torch.as_tensor(rng.integers(1, random_pairs[0] + 1, pos.size), device=dev)
                    ri = torch.as_tensor(rng.integers(1, random_pairs[1] + 1, pos.size), device=dev)
                    yield self.user[p], self.item[p], self.rating[p], ru, ri

        def make(rng: np.random.Generator, epoch: int) -> Batches:
            return Batches(epoch_batches(rng), n_batches(len(self), batch_size))
        return make

    def valid_rmse(self, predict) -> float:
        """RMSE of ``predict(users, items) -> ratings`` on the validation slice."""
        pred = predict(self.valid_user, self.valid_item)  # (V,)
        return float(torch.sqrt(torch.mean((pred - self.valid_rating) ** 2)))


class ExplicitMF(EmbeddingModel):
    """Regularized matrix factorization of explicit ratings (MSE + L2 + gravity), with optional biases."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "factors": IntRange(8, 256, log=True),
        "l2": FloatRange(1e-4, 1.0, log=True),
        "lr": FloatRange(0.05, 5.0, log=True),
        "gravity": FloatRange(1e-4, 1.0, log=True),
        "init_std": FloatRange(1e-3, 0.3, log=True),
    }

    predicts_ratings = True
    needs = ("ratings",)

    def __init__(self, *, factors: int = 128, l2: float = 0.05, table_l2: float = 0.0, gravity: float = 0.0,
                 biases: bool = True, epochs: int = 100, batch_size: int = 128, lr: float = 1.0,
                 optimizer: str = "sgd", init_std: float = 0.01, patience: int | None = 5,
                 valid_fraction: float = 0.05, clip: bool = True, history_rating: float | None = None,
                 seed: int = 0, device: str | None = None, progress: bool | None = None) -> None:
        self.factors = check_positive_int("factors", factors)
        self.l2 = check_float("l2", l2, low=0.0)
        self.table_l2 = check_float("table_l2", table_l2, low=0.0)
        self.gravity = check_float("gravity", gravity, low=0.0)
        if not isinstance(biases, bool):
            raise InvalidParameterError(f"biases must be True or False; received {biases!r}.")
        self.biases = biases
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.lr = lr
        self.optimizer = optimizer
        TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, patience=patience)  # validates them
        self.init_std = check_float("init_std", init_std, low=0.0)
        self.patience = patience
        self.valid_fraction = check_float("valid_fraction", valid_fraction, low=0.0, high=0.5)
        self.clip = bool(clip)
        self.history_rating = None if history_rating is None else check_float("history_rating", history_rating)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.device = device
        self.progress = progress

    # training -------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        device = resolve_device(self.device)
        with seeded(self.seed) as rng:
            data = RatingSplit(train, valid, valid_fraction=self.valid_fraction, rng=rng, device=device)
            if len(data) == 0:
                raise DataError("train has no rating with a known user and item; nothing to learn from.")
            self.rating_range_ = (float(data.all_rating.min()), float(data.all_rating.max()))
            self.n_ratings_ = len(data)
            mean = float(data.all_rating.mean()) if self.biases else 0.0
            net = _MFNet(self.users_.size, self.items_.size, self.factors, self.init_std, mean).to(device)
            loss_fn = RatingLoss(l2=self.table_l2, gravity=self.gravity)

            def loss(batch):
                u, i, r = batch
                pred = net(u, i, self.biases)  # (B,)
                total = loss_fn(pred, r, net.user[1:], net.item[1:],
                                (net.user_bias[1:], net.item_bias[1:]) if self.biases else ())
                if self.l2:
                    biases = (net.user_bias[u], net.item_bias[i]) if self.biases else ()
                    total = total + self.l2 * row_l2(net.user[u], net.item[i], *biases)
                return total

            config = TrainConfig(epochs=self.epochs, lr=self.lr, optimizer=self.optimizer,
                                 patience=self.patience if data.has_valid else None,
                                 minimize_valid=True, progress=self.progress)
            validate = (lambda: data.valid_rmse(lambda u, i: self._clip(net(u, i, self.biases)))) \
                if data.has_valid else None
            self.history_ = train_loop(net, batches=data.batches(self.batch_size), loss=loss, config=config,
                                       rng=rng, validate=validate, desc="explicit-mf")
        self._set_tables(net)
        if data.has_valid:
            self.metrics_["valid_rmse"] = min(h["valid"] for h in self.history_)

    def _set_tables(self, net: _MFNet) -> None:
        self.user_factors_ = net.user.detach().cpu().numpy()  # (N+1, d)
        self.item_factors_ = net.item.detach().cpu().numpy()  # (M+1, d)
        self.user_bias_ = net.user_bias.detach().cpu().numpy()  # (N+1,)
        self.item_bias_ = net.item_bias.detach().cpu().numpy()  # (M+1,)
        self.mean_ = float(net.mean)
        if not self.biases:
            self.user_bias_[:] = 0.0
            self.item_bias_[:] = 0.0
        self.user_factors_[0] = 0.0
        self.item_factors_[0] = 0.0
        self.user_bias_[0] = self.item_bias_[0] = 0.0
        self.__dict__.pop("_indexes", None)
        self.__dict__.pop("_fold_in_ctx", None)

    def _clip(self, x):
        if not self.clip:
            return x
        lo, hi = self.rating_range_
        return x.clamp(lo, hi) if isinstance(x, torch.Tensor) else np.clip(x, lo, hi)

    # ratings --------------------------------------------------------------------------------
    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """(n,) predicted ratings for dense (user row, item row) pairs; row 0 (unknown) gets a zero
        vector and bias, i.e. μ + b_i for an unknown user, μ + b_u for an unknown item."""
        self._check_fitted()
        u = check_rows("user_rows", user_rows, self.users_.size)
        i = check_rows("item_rows", item_rows, self.items_.size)
        if u.shape != i.shape:
            raise InvalidParameterError(f"user_rows and item_rows must have the same length; received "
                                        f"{u.size} and {i.size}.")
        pred = self.mean_ + self.user_bias_[u] + self.item_bias_[i] \
            + np.einsum("nd,nd->n", self.user_factors_[u], self.item_factors_[i])  # (n,)
        return self._clip(pred).astype(np.float32)

    def predict_ids(self, users: Sequence[Any], items: Sequence[Any]) -> np.ndarray:
        """(n,) predicted ratings for raw (user id, item id) pairs; unknown ids are an error."""
        self._check_fitted()
        return self.predict(self.users_.encode(list(users), unknown="error"),
                            self.items_.encode(list(items), unknown="error"))

    # fold-in --------------------------------------------------------------------------------
    def fold_in(self, items: Sequence[Any], ratings: Sequence[float] | None = None) -> np.ndarray:
        """(d,) the user vector of a new user who gave ``ratings`` to raw ``items`` (closed-form ridge)."""
        return self.user_embedding(history=items, ratings=ratings)

    def user_embedding(self, user: Any = None, *, history: Sequence[Any] | None = None,
                       ratings: Sequence[float] | None = None) -> np.ndarray:
        """(d,) a known user's vector, or the fold-in of ``history`` (raw item ids) with their ``ratings``."""
        if ratings is not None and (history is None or user is not None):
            raise InvalidParameterError("ratings= goes with history= alone; received ratings with "
                                        f"{'a user' if user is not None else 'no history'}.")
        if ratings is None:
            return super().user_embedding(user, history=history)
        rows, hist = self.queries(None, [history])
        return self._fold_in(hist, flat_ratings(hist, [ratings]))[0, :-1]

    def recommend(self, users: Sequence[Any] | None = None, *, histories: Sequence[Sequence[Any]] | None = None,
                  ratings: Sequence[Sequence[float]] | None = None, k: int = 10,
                  exclude_seen: bool = False, items: Sequence[Any] | None = None,
                  exclude_items: Sequence[Any] | None = None) -> Recommendations:
        """Top-``k`` items for known ``users`` or for ``histories`` of raw item ids, optionally with the
        ``ratings`` the user gave them (one list per history; without them, ``history_rating``);
        ``items`` / ``exclude_items`` restrict the candidates as in ``Recommender.recommend``."""
        if ratings is None:
            return super().recommend(users, histories=histories, k=k, exclude_seen=exclude_seen,
                                     items=items, exclude_items=exclude_items)
        if histories is None:
            raise InvalidParameterError("ratings= goes with histories=; received ratings without histories.")
        user_rows, hist = self.queries(None, histories)
        k = self._check_k(k)
        q = self._fold_in(hist, flat_ratings(hist, ratings))  # (B, d+1)
        q[:, -1] = 1.0
        allow, deny = self.restriction(items, exclude_items)
        exclude = with_denied(hist if exclude_seen else None, deny, len(user_rows))
        index = self.index_for("dot")
        rows, scores = (index.search(q, k, exclude=exclude) if allow is None
                        else index.search(q, k, exclude=exclude, allow=allow))
        rows = np.maximum(rows, 0)
        return Recommendations(self.items_.decode(rows), scores, rows)

    @one_blas_thread
    def _fold_in(self, hist: Ragged, ratings: np.ndarray | None) -> np.ndarray:
        """(B, d+1) [U_u, b_u] solving each history's ridge system (see the module docstring); the
        part shared by every user is built once per model, the (d+1)² systems are solved as one stack."""
        d = self.factors
        if ratings is None:
            assumed = self.rating_range_[1] if self.history_rating is None else self.history_rating
            ratings = np.full(hist.values.size, assumed)
        v, reg = self._fold_in_tables()
        a_all = np.empty((len(hist), d + 1, d + 1))
        b_all = np.empty((len(hist), d + 1))
        for b in range(len(hist)):
            s, e = hist.offsets[b], hist.offsets[b + 1]
            rows, r = hist.values[s:e], np.asarray(ratings[s:e], dtype=np.float64)
            x = np.concatenate([v[rows], np.ones((rows.size, 1))], axis=1)  # (n, d+1)
            target = r - self.mean_ - self.item_bias_[rows]  # (n,)
            a = x.T @ x + reg + self.l2 * rows.size * np.eye(d + 1)
            if not self.biases:
                a[d, :], a[:, d], a[d, d] = 0.0, 0.0, 1.0
                target = r
            a_all[b], b_all[b] = a, x.T @ target
        if not len(hist):
            return np.zeros((0, d + 1), dtype=np.float32)
        return np.linalg.solve(a_all, b_all[:, :, None])[:, :, 0].astype(np.float32)

    def _fold_in_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(float64 item factors, the (d+1)² regulariser shared by every user), built once per model."""
        cached = self.__dict__.get("_fold_in_ctx")
        if cached is None:
            d = self.factors
            v = self.item_factors_.astype(np.float64)
            n_u, n_i = self.users_.n_ids, self.items_.n_ids
            reg = np.zeros((d + 1, d + 1))
            reg[:d, :d] += self.table_l2 * self.n_ratings_ / max(n_u, 1) * np.eye(d)
            reg[:d, :d] += self.gravity * self.n_ratings_ / max(n_u * n_i, 1) * (v[1:].T @ v[1:])
            if self.biases:
                reg[d, d] += self.table_l2 * self.n_ratings_ / max(n_u, 1)
            cached = self._fold_in_ctx = (v, reg)
        return cached

    # embeddings -----------------------------------------------------------------------------
    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self._query_vectors(user_rows, histories)[:, :-1]

    def _query_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        """(B, d+1) [U_u, 1]: the dot with [V_i, b_i] ranks like the predicted rating."""
        out = np.ones((len(user_rows), self.factors + 1), dtype=np.float32)
        known = user_rows > 0
        out[known, :-1] = self.user_factors_[user_rows[known]]
        if (~known).any():
            new = np.flatnonzero(~known)
            out[new, :-1] = self._fold_in(histories.select(new), None)[:, :-1]
        return out

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _candidate_vectors(self) -> np.ndarray:
        return np.concatenate([self.item_factors_, self.item_bias_[:, None]], axis=1)  # (M+1, d+1)

    # persistence ----------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_}

    def _get_extra(self) -> dict[str, Any]:
        return {"mean": self.mean_, "rating_range": list(self.rating_range_), "n_ratings": self.n_ratings_}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        for key in ("user_factors", "item_factors", "user_bias", "item_bias"):
            setattr(self, f"{key}_", state[key])
        if self.user_factors_.shape != (self.users_.size, self.factors):
            raise ValueError(f"user_factors has shape {self.user_factors_.shape}, expected "
                             f"({self.users_.size}, {self.factors})")
        self.mean_ = float(extra["mean"])
        self.rating_range_ = tuple(extra["rating_range"])
        self.n_ratings_ = int(extra["n_ratings"])
        self.__dict__.pop("_fold_in_ctx", None)


def check_rows(name: str, rows: Any, size: int) -> np.ndarray:
    """``rows`` as int64 dense rows in 0..size-1, or a clear error."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InvalidParameterError(f"{name} must be a 1-D array of dense integer rows; received "
                                    f"dtype {arr.dtype} and shape {arr.shape}.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        raise InvalidParameterError(f"{name} must lie in 0..{size - 1}; received values in "
                                    f"{arr.min()}..{arr.max()}.")
    return arr


def flat_ratings(hist: Ragged, ratings: Sequence[Sequence[float]]) -> np.ndarray:
    """The ratings of every history, flattened like ``hist.values`` (one finite rating per item)."""
    if isinstance(ratings, (str, bytes)) or len(ratings) != len(hist):
        raise InvalidParameterError(f"ratings must hold one list per history ({len(hist)}); received {ratings!r:.60}.")
    flat = []
    for h, r in zip(hist, ratings):
        r = np.asarray(r, dtype=np.float64).ravel()
        if r.size != h.size or not np.all(np.isfinite(r)):
            raise InvalidParameterError(f"each history needs one finite rating per item ({h.size}); "
                                        f"received {r.tolist()!r:.60}.")
        flat.append(r)
    return np.concatenate(flat)
