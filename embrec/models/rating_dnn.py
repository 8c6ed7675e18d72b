"""Rating DNN (the Keras goodbooks question): user and item embeddings → concat → dense layers → rating.

    model = RatingDNN(factors=64, hidden=(64, 32)).fit(train)          # train.rating is required
    model.predict(user_rows, item_rows)                                # (n,) ratings on dense rows
    model.similar_items(["50"], k=10)                                  # cosine over the item table
    model.recommend(histories=[["50", "181"]], ratings=[[5, 4]], k=10)

Network::

    x   = concat(P[u], Q[i])                    (B, 2d)   the user and item embedding rows (after
                                                          ``embedding_dropout``)
    h   = MLP(x)                                (B, H)    Linear → ReLU → Dropout per hidden layer
    o   = Linear(h) + ⟨P[u], Q[i]⟩              (B,)      product=True adds the dot product of the two
                                                          embeddings (the MF term) to the dense output
    r̂   = μ + b_u + b_i + o                     (B,)      biases=True ("wide" part); else o alone

Loss: MSE on observed ratings + ``l2`` · mean over the batch of the squared norms of the rows it
touched (``embrec.nn.regression.row_l2``) + ``gravity`` · 1/(MN) Σ ⟨P_u, Q_i⟩² over all pairs (the
colab's gravity term on the embedding tables, i.e. on the dot-product part) + ``output_gravity`` ·
mean (f(u, i) − ``gravity_target``)² over as many uniformly drawn (user, item) pairs as the batch holds
(``output_gravity_term``; f is the whole prediction r̂ with ``gravity_part="output"``, or its interaction
part o = r̂ − μ − b_u − b_i with ``"interaction"``; the target is a number or ``"mean"``, the training
mean; an unbiased estimate of the all-pairs mean, which no Gram-matrix identity gives for an MLP)
+ ``implicit`` · the observation head's loss (below) + the optimizer's ``weight_decay``.

The observation head (``implicit`` > 0, on by default): a second user table R, used in training only,
scores s(u, i) = ⟨R_u, Q_i⟩ with the SAME item table Q, and is fitted like the colab's regularized MF
without biases: mean over the batch of (s(u, i) − t)² on the observed pairs (t = ``implicit_target``:
a constant, 1 by default, i.e. "was rated"; or ``"rating"``) + ``implicit_gravity`` · 1/(MN) Σ over all
pairs s(u, i)² (Gram-matrix form, exact) + ``l2`` · row_l2(R) (``implicit_term``). Why: genre lives in
WHICH movies a user rates; the rating loss (with biases) only sees how the observed ratings deviate, so
Q's cosine geometry carries little of it (ml-100k genre-overlap ratio 1.30); a term that pulls observed
pairs up and all pairs toward 0 injects the "what was rated" signal into Q. Put on the prediction itself
(``output_gravity``), the same signal pulls every unobserved pair — held-out test pairs included —
toward the target and costs RMSE (0.984 on u1's validation slice at ``output_gravity=0.1``); through its
own head it leaves the prediction alone, and the shared Q even predicts better. The defaults
(``implicit=10, implicit_gravity=2, implicit_target=1``, with ``init_std=0.01, embedding_lr=0.5,
batch_size=256``) were chosen on u1.base's own validation slice (RMSE 0.9225 → 0.8988); ml100k-rmse
mean 0.8956 (was 0.9167), genre-overlap ratio 2.02 over all movies (was 1.30), 2.20 over movies with
≥ 20 ratings. ``implicit=0, init_std=0.05, embedding_lr=1.0, batch_size=128`` is the plain rating DNN
of before. The head is not saved (prediction, fold-in and ``user_embedding`` use P alone). When which
items were rated says nothing about them (a random mask), the head only adds noise: use ``implicit=0``.

Trained by the shared
loop (Adam; with ``embedding_lr`` set, the embedding and bias tables take plain SGD steps at that rate
while the dense layers keep ``optimizer``), validation RMSE each epoch, early stopping; without
``valid=``, a seeded ``valid_fraction`` of the training ratings is held out for it.

Its ``item_embeddings()`` are the rows of Q, so ``similar_items`` is a cosine (or dot) search over them;
``embrec.evaluation.neighbours.genre_overlap`` measures whether those neighbours make sense.

The score of a (user, item) pair is not a dot product, so ``recommend`` evaluates the network on all
items (in chunks) rather than going through an index. ``user_embedding`` is the user's row of P.

A new user (fold-in): the network, Q and the item biases stay fixed; the user's own loss
Σ (r − r̂)² / n + l2 · (‖p‖² + b_u²) — the training MSE of that user's ratings with the row L2 of
training — is minimised over [p, b_u] by at most ``fold_in_steps`` damped Gauss-Newton steps (the
Jacobian of the ReLU network is exact; a step is halved while the slope along it stays steep), starting at the
mean trained user vector and bias. The loss is not convex through the MLP, so this finds the
minimum nearest that start; with ``hidden=()`` it is a ridge regression and one step solves it.
Users are solved independently and without randomness: the same history always gives the same
vector, alone or in a batch. A history without ratings is read as items the user liked:
every item is assumed rated ``history_rating`` (default: the highest training rating).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import (
    DataError,
    InvalidParameterError,
    check_choice,
    check_float,
    check_positive_int,
)
from embrec.models.base import EmbeddingModel, Recommendations, Recommender, top_k_rows
from embrec.models.explicit_mf import RatingSplit, check_rows, flat_ratings
from embrec.models.foldin import newton, one_blas_thread
from embrec.models.rating_dnn_net import CHUNK_PAIRS as _CHUNK_PAIRS
from embrec.models.rating_dnn_net import (
    FixedRatingNet,
    RatingNet,
    implicit_term,
    output_gravity_term,
)
from embrec.models.search import Choice, FloatRange, IntRange, Param
from embrec.models.training import TrainConfig, make_optimizer, resolve_device, seeded, train_loop
from embrec.nn.regression import gravity as gravity_term
from embrec.nn.regression import observed_mse, row_l2

logger = logging.getLogger(__name__)


class _SplitOptimizer:
    """Plain SGD on the embedding tables (Funk-SVD style) and another optimizer on the dense layers."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


class RatingDNN(EmbeddingModel):
    """User/item embeddings → concat → MLP → rating, trained on observed ratings (MSE)."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "factors": IntRange(8, 128, log=True),
        "hidden": Choice(((32,), (64,), (64, 32))),
        "dropout": FloatRange(0.0, 0.5),
        "l2": FloatRange(1e-3, 1.0, log=True),
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "weight_decay": FloatRange(1e-6, 1e-2, log=True),
    }

    predicts_ratings = True
    needs = ("ratings",)

    def __init__(
        self,
        *,
        factors: int = 64,
        hidden: Sequence[int] = (32,),
        dropout: float = 0.2,
        embedding_dropout: float = 0.0,
        product: bool = True,
        biases: bool = True,
        l2: float = 0.05,
        gravity: float = 0.0,
        output_gravity: float = 0.0,
        gravity_part: str = "output",
        gravity_target: float | str = 0.0,
        implicit: float = 10.0,
        implicit_target: float | str = 1.0,
        implicit_gravity: float = 2.0,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        optimizer: str = "adam",
        embedding_lr: float | None = 0.5,
        init_std: float = 0.01,
        patience: int | None = 5,
        valid_fraction: float = 0.05,
        clip: bool = True,
        history_rating: float | None = None,
        fold_in_steps: int = 4,
        seed: int = 0,
        device: str | None = None,
        progress: bool | None = None,
    ) -> None:
        self.factors = check_positive_int("factors", factors)
        if isinstance(hidden, (str, bytes)) or not all(
            isinstance(h, (int, np.integer)) and h > 0 for h in hidden
        ):
            raise InvalidParameterError(
                f"hidden must be a list of positive layer widths; received {hidden!r}."
            )
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = check_float("dropout", dropout, low=0.0, high=0.9)
        self.embedding_dropout = check_float(
            "embedding_dropout", embedding_dropout, low=0.0, high=0.9
        )
        for name, flag in (("product", product), ("biases", biases)):
            if not isinstance(flag, bool):
                raise InvalidParameterError(f"{name} must be True or False; received {flag!r}.")
        self.product = product
        self.biases = biases
        self.l2 = check_float("l2", l2, low=0.0)
        self.gravity = check_float("gravity", gravity, low=0.0)
        self.output_gravity = check_float("output_gravity", output_gravity, low=0.0)
        self.gravity_part = check_choice("gravity_part", gravity_part, ("output", "interaction"))
        if gravity_target != "mean":
            gravity_target = check_float("gravity_target", gravity_target)
        self.gravity_target = gravity_target
        self.implicit = check_float("implicit", implicit, low=0.0)
        if implicit_target != "rating":
            implicit_target = check_float("implicit_target", implicit_target)
        self.implicit_target = implicit_target
        self.implicit_gravity = check_float("implicit_gravity", implicit_gravity, low=0.0)
        self.weight_decay = check_float("weight_decay", weight_decay, low=0.0)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.lr = lr
        self.optimizer = optimizer
        self.embedding_lr = (
            None
            if embedding_lr is None
            else check_float("embedding_lr", embedding_lr, low=0.0, low_open=True)
        )
        self.patience = patience
        TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, patience=patience)  # validates them
        self.init_std = check_float("init_std", init_std, low=0.0)
        self.valid_fraction = check_float("valid_fraction", valid_fraction, low=0.0, high=0.5)
        self.clip = bool(clip)
        self.history_rating = (
            None if history_rating is None else check_float("history_rating", history_rating)
        )
        self.fold_in_steps = check_positive_int("fold_in_steps", fold_in_steps)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.device = device
        self.progress = progress

    # training -------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        device = resolve_device(self.device)
        with seeded(self.seed) as rng:
            data = RatingSplit(
                train, valid, valid_fraction=self.valid_fraction, rng=rng, device=device
            )
            if len(data) == 0:
                raise DataError(
                    "train has no rating with a known user and item; nothing to learn from."
                )
            self.rating_range_ = (float(data.all_rating.min()), float(data.all_rating.max()))
            mean = float(data.all_rating.mean()) if self.biases else 0.0
            target = (
                float(data.all_rating.mean())
                if self.gravity_target == "mean"
                else float(self.gravity_target)
            )
            with_biases = self.biases and self.gravity_part == "output"
            net = RatingNet(
                self.users_.size,
                self.items_.size,
                self.factors,
                self.hidden,
                self.dropout,
                mean,
                self.init_std,
                self.product,
                self.embedding_dropout,
            ).to(device)
            if self.implicit:  # the observation head's own user table (training only)
                net.implicit_user = torch.nn.Embedding(self.users_.size, self.factors).to(device)
                torch.nn.init.normal_(net.implicit_user.weight, std=self.init_std)

            def loss(batch):
                u, i, r = batch[:3]
                total = observed_mse(net(u, i, self.biases), r)
                # the gravity term on the network's output, sampled over all pairs
                if self.output_gravity:
                    total = total + self.output_gravity * output_gravity_term(
                        net, batch[3], batch[4], with_biases, target
                    )
                if self.l2:
                    biases = (
                        (net.user_bias(u).squeeze(-1), net.item_bias(i).squeeze(-1))
                        if self.biases
                        else ()
                    )
                    total = total + self.l2 * row_l2(net.user(u), net.item(i), *biases)
                if self.gravity:
                    total = total + self.gravity * gravity_term(
                        net.user.weight[1:], net.item.weight[1:]
                    )
                if self.implicit:
                    t = (
                        r
                        if self.implicit_target == "rating"
                        else torch.full_like(r, self.implicit_target)
                    )
                    total = total + self.implicit * (
                        implicit_term(net, u, i, t, self.implicit_gravity)
                        + self.l2 * row_l2(net.implicit_user(u))
                    )
                return total

            config = TrainConfig(
                epochs=self.epochs,
                lr=self.lr,
                optimizer=self.optimizer,
                weight_decay=self.weight_decay,
                patience=self.patience if data.has_valid else None,
                minimize_valid=True,
                progress=self.progress,
            )
            validate = (
                (lambda: data.valid_rmse(lambda u, i: self._clip(net(u, i, self.biases))))
                if data.has_valid
                else None
            )
            pairs = (self.users_.n_ids, self.items_.n_ids) if self.output_gravity else None
            self.history_ = train_loop(
                net,
                batches=data.batches(self.batch_size, random_pairs=pairs),
                loss=loss,
                config=config,
                rng=rng,
                validate=validate,
                desc="rating-dnn",
                optimizer=self._optimizer(net, config),
            )
        self.net_ = net.cpu().eval()
        self.__dict__.pop("_indexes", None)
        self.__dict__.pop("_fold_in_ctx", None)
        if data.has_valid:
            self.metrics_["valid_rmse"] = min(h["valid"] for h in self.history_)

    def _optimizer(self, net: RatingNet, config: TrainConfig) -> Any:
        if self.embedding_lr is None:
            return None  # the loop's optimizer over every parameter
        tables = [net.user.weight, net.item.weight, net.user_bias.weight, net.item_bias.weight]
        if hasattr(net, "implicit_user"):
            tables.append(net.implicit_user.weight)
        dense = [
            p for p in net.parameters() if all(p is not t for t in tables)
        ]  # MLP + output layer
        return _SplitOptimizer(
            torch.optim.SGD(tables, lr=self.embedding_lr), make_optimizer(dense, config)
        )

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.rating_range_) if self.clip else x

    # ratings --------------------------------------------------------------------------------
    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """(n,) predicted ratings for dense (user row, item row) pairs (row 0 = the padding vectors)."""
        self._check_fitted()
        u = check_rows("user_rows", user_rows, self.users_.size)
        i = check_rows("item_rows", item_rows, self.items_.size)
        if u.shape != i.shape:
            raise InvalidParameterError(
                f"user_rows and item_rows must have the same length; received "
                f"{u.size} and {i.size}."
            )
        out = np.empty(u.size, dtype=np.float32)
        with torch.no_grad():
            for s in range(0, u.size, _CHUNK_PAIRS):
                tu, ti = (
                    torch.as_tensor(u[s : s + _CHUNK_PAIRS]),
                    torch.as_tensor(i[s : s + _CHUNK_PAIRS]),
                )
                out[s : s + _CHUNK_PAIRS] = self._clip(self.net_(tu, ti, self.biases)).numpy()
        return out

    def predict_ids(self, users: Sequence[Any], items: Sequence[Any]) -> np.ndarray:
        """(n,) predicted ratings for raw (user id, item id) pairs; unknown ids are an error."""
        self._check_fitted()
        return self.predict(
            self.users_.encode(list(users), unknown="error"),
            self.items_.encode(list(items), unknown="error"),
        )

    def _rate_all(self, p: torch.Tensor | np.ndarray, bu: torch.Tensor | np.ndarray) -> np.ndarray:
        """(B, M+1) predicted ratings of every item for user vectors p (B, d) and biases bu (B,)
        (``FixedRatingNet.rate_all``: the first dense layer's item half precomputed once per model)."""
        return self._fixed_net().rate_all(np.asarray(p), np.asarray(bu))

    # recommendation and fold-in ---------------------------------------------------------------
    def _user_params(
        self, user_rows: np.ndarray, histories: Ragged, ratings: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d) user vectors and (B,) biases: trained rows, or folded in for row 0."""
        rows = torch.as_tensor(np.asarray(user_rows, dtype=np.int64))
        with torch.no_grad():
            p = self.net_.user(rows).clone()  # (B, d)
            bu = self.net_.user_bias(rows).squeeze(-1).clone()  # (B,)
        new = np.flatnonzero(np.asarray(user_rows) == 0)
        if new.size:
            part = histories.select(new)
            flat = ratings if ratings is not None else self._assumed(part)
            fp, fb = self._fold_in(part, flat)
            p[new], bu[new] = fp, fb
        return p, bu

    def _assumed(self, hist: Ragged) -> np.ndarray:
        value = self.rating_range_[1] if self.history_rating is None else self.history_rating
        return np.full(hist.values.size, value, dtype=np.float32)

    @one_blas_thread
    def _fold_in(self, hist: Ragged, ratings: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d) user vectors and (B,) biases: damped Gauss-Newton on each user's own loss (docstring),
        users solved independently (a batch gives what one-at-a-time calls give)."""
        net, d = self._fixed_net(), self.factors
        ratings = np.asarray(ratings, dtype=np.float64)
        users = [
            (
                hist.values[hist.offsets[b] : hist.offsets[b + 1]],
                ratings[hist.offsets[b] : hist.offsets[b + 1]],
            )
            for b in range(len(hist))
        ]
        z = newton(
            lambda u, x: net.gradient(users[u][0], users[u][1], x, self.l2),
            np.tile(net.start, (len(hist), 1)),  # (B, d + 1): the mean trained user vector and bias
            np.ones(len(hist)),
            steps=self.fold_in_steps,
        )
        return torch.as_tensor(z[:, :d], dtype=torch.float32), torch.as_tensor(
            z[:, d], dtype=torch.float32
        )

    def _fixed_net(self) -> FixedRatingNet:
        """The trained network as numpy arrays (``embrec.models.rating_dnn_net``), built once per model."""
        net = self.__dict__.get("_fold_in_ctx")
        if net is None:
            net = self._fold_in_ctx = FixedRatingNet(
                self.net_,
                self.factors,
                product=self.product,
                biases=self.biases,
                rating_range=self.rating_range_,
                clip=self.clip,
            )
        return net

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        p, bu = self._user_params(user_rows, histories)
        return self._rate_all(p, bu)

    def top_k(
        self,
        user_rows: np.ndarray,
        histories: Ragged,
        k: int,
        *,
        exclude: Ragged | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        # the network's score is not a dot product: score every item (in chunks), no index
        return Recommender.top_k(self, user_rows, histories, k, exclude=exclude, allow=allow)

    def recommend(
        self,
        users: Sequence[Any] | None = None,
        *,
        histories: Sequence[Sequence[Any]] | None = None,
        ratings: Sequence[Sequence[float]] | None = None,
        k: int = 10,
        exclude_seen: bool = False,
        items: Sequence[Any] | None = None,
        exclude_items: Sequence[Any] | None = None,
    ) -> Recommendations:
        """Top-``k`` items by predicted rating for known ``users`` or for ``histories`` (raw item ids),
        optionally with the ``ratings`` given to them (one list per history); ``items`` /
        ``exclude_items`` restrict the candidates as in ``Recommender.recommend``."""
        if ratings is None:
            return super().recommend(
                users,
                histories=histories,
                k=k,
                exclude_seen=exclude_seen,
                items=items,
                exclude_items=exclude_items,
            )
        if histories is None:
            raise InvalidParameterError(
                "ratings= goes with histories=; received ratings without histories."
            )
        user_rows, hist = self.queries(None, histories)
        k = self._check_k(k)
        p, bu = self._fold_in(hist, flat_ratings(hist, ratings))
        sc = self._rate_all(p, bu)
        sc[:, 0] = -np.inf
        if exclude_seen:
            sc[hist.row_ids, hist.values] = -np.inf
        allow, deny = self.restriction(items, exclude_items)
        if deny is not None:
            sc[:, deny] = -np.inf
        if allow is not None:
            keep = np.zeros(sc.shape[1], dtype=bool)
            keep[allow] = True
            sc[:, ~keep] = -np.inf
        rows, scores = top_k_rows(sc, k)
        rows[~np.isfinite(scores)] = 0
        return Recommendations(self.items_.decode(rows), scores, rows)

    def user_embedding(
        self,
        user: Any = None,
        *,
        history: Sequence[Any] | None = None,
        ratings: Sequence[float] | None = None,
    ) -> np.ndarray:
        """(d,) a known user's row of P, or the fold-in of ``history`` with its ``ratings``."""
        if ratings is None:
            return super().user_embedding(user, history=history)
        if history is None or user is not None:
            raise InvalidParameterError(
                "ratings= goes with history= alone; received ratings with "
                f"{'a user' if user is not None else 'no history'}."
            )
        _, hist = self.queries(None, [history])
        return self._fold_in(hist, flat_ratings(hist, [ratings]))[0][0].numpy()

    def fold_in(self, items: Sequence[Any], ratings: Sequence[float] | None = None) -> np.ndarray:
        """(d,) the user vector of a new user who gave ``ratings`` to raw ``items``."""
        return self.user_embedding(history=items, ratings=ratings)

    # embeddings -----------------------------------------------------------------------------
    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self._user_params(user_rows, histories)[0].numpy()

    def _item_vectors(self) -> np.ndarray:
        return self.net_.item.weight.detach().numpy()

    # persistence ----------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            k: v.detach().cpu().numpy()
            for k, v in self.net_.state_dict().items()
            if not k.startswith("implicit_")
        }  # the observation head is not needed to predict

    def _get_extra(self) -> dict[str, Any]:
        return {"rating_range": list(self.rating_range_)}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        net = RatingNet(
            self.users_.size,
            self.items_.size,
            self.factors,
            self.hidden,
            self.dropout,
            0.0,
            0.0,
            self.product,
            self.embedding_dropout,
        )
        net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        self.net_ = net.eval()
        self.rating_range_ = tuple(extra["rating_range"])
        self.__dict__.pop("_fold_in_ctx", None)
