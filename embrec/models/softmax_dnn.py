"""Softmax DNN (the course colab's §VI): a user tower Ψ(X) over the history, logits Ψ(X)·Vᵀ over all items.

    X = a user's history (any list of item ids: a new user's too)
    Ψ(X) = MLP( [ mean_{i∈X} V_i  ;  mean_{i∈X} features(i) ] )        # (d,)
    logits = Ψ(X) · Vᵀ + b  (+ a repeat term on count_X(j) when repeat_bonus; see SoftmaxNet.repeat_term)
    loss   = softmax cross-entropy against items held out of X (history_batches.py); with holdout targets
             the softmax runs over the items not in X (they can never be the answer), so such a model
             ranks new items: recommend with ``exclude_seen=True``

``V`` (items.size, d) is both the input bag of history item ids and the softmax weights (tied), as in
the colab ("the movie embeddings are used at the same time as input embeddings … and as softmax
weights"). ``features(i)`` concatenates the item's feature bags (ml-100k: genres, release-year bucket,
title words; Online Retail: price bucket, price, description words) — every column of
``train.item_features`` unless ``features`` names some (``features=()``: item ids only).

``repeat_bonus`` adds learnt weights on how often item j occurs in X (all of it, and its last 50 items) and a
learnt per-item repeat propensity for j ∈ X. It only learns something when targets may repeat the input
(``targets="next-basket"`` or ``"next-period"``: Online Retail); ``None`` turns it on exactly then.

``loss="sampled"`` replaces the softmax over all items by one over the batch's targets plus ``num_negatives``
uniformly drawn items, with logQ correction and accidental hits removed (the two-tower's
``embrec.nn.softmax.SampledSoftmax``, computed with one logit row per example: ``grouped_sampled_nll``); the
item table, its bias and repeat rows then get sparse row gradients (``gather_rows``, a sparse EmbeddingBag
for the history) and lazy row-wise Adam (``embrec.nn.optim.RowAdam``; with ``weight_decay`` > 0 they stay
dense), so an epoch no longer costs batch x catalogue. ``loss="auto"`` (the default) takes the full softmax up to
``full_softmax_max_items`` items and the sampled one above (the threshold is measured: docs/benchmarks.md,
"Sampled softmax in softmax-dnn").

An epoch is at least ``min_epoch_examples`` examples (default ``MIN_EPOCH_EXAMPLES`` = 5,000: fresh holdout
draws when the log has few users, history_batches.py), so the number of optimizer steps does not shrink with
the number of users; ``valid_users`` > 0 early-stops on a slice carved from train when ``fit`` gets no ``valid``.
With holdout targets (a log without baskets) an example holds out ``holdout`` = 35 % of the user's items as its
targets (chosen over 10 % and 20 % on six validation parts: docs/benchmarks.md, "softmax-dnn: a third look").

``per_example=True`` weighs every training example (a user's history) the same in the loss instead of every
(example, target) pair. ``max_history`` keeps the last N items of a history, in training and at inference.

    model = SoftmaxDNN(dim=64, epochs=30).fit(train, valid=valid)
    model.user_embedding(history=["50", "172"])     # Ψ(X), (d,)
    model.recommend(histories=[["50", "172"]], k=10)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, ModelFileError, check_choice, check_float, check_positive_int
from embrec.memory import check_tables
from embrec.models.base import EmbeddingModel, Recommender
from embrec.models.distributed import local_interactions
from embrec.models.history_batches import (
    MIN_EPOCH_EXAMPLES,
    TARGETS,
    ExampleMaker,
    HistoryBatch,
    early_stopping_split,
    history_batches,
    resolve_targets,
    valid_precision,
)
from embrec.models.search import Choice, FloatRange, IntRange, Param
from embrec.models.training import TrainConfig, make_optimizer, resolve_device, seeded, train_loop
from embrec.nn import eval_mode
from embrec.nn.pairwise import gather_rows
from embrec.nn.softmax import FullSoftmax, grouped_sampled_nll
from embrec.nn.towers import (
    FeatureEmbedder,
    FeatureEncoder,
    ItemFeatures,
    TorchItemFeatures,
    mlp,
    pool_encoded,
    pool_vectors,
)

logger = logging.getLogger(__name__)

_MASKED = -1e9
#: loss="auto" takes the full softmax up to this many items (measured: docs/benchmarks.md)
FULL_SOFTMAX_MAX_ITEMS = 10_000
RECENT = 50  # the repeat term's "recent" window, in history items


class SoftmaxNet(nn.Module):
    """The user tower and the tied item table."""

    def __init__(self, n_rows: int, *, dim: int, feature_dim: int, hidden: list[int], dropout: float,
                 encoder: FeatureEncoder | None) -> None:
        super().__init__()
        check_tables("dim", dim, {"item": n_rows})
        self.items = nn.Embedding(n_rows, dim, padding_idx=0)  # V, tied input/output
        nn.init.normal_(self.items.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.bias = nn.Parameter(torch.zeros(n_rows))
        self.embed = FeatureEmbedder(encoder, dim=feature_dim) if encoder is not None else None
        in_dim = dim + (self.embed.out_dim if self.embed is not None else 0)
        self.tower = mlp([in_dim, *hidden, dim], dropout=dropout)
        self.repeat = nn.Parameter(torch.zeros(3))
        self.repeat_item = nn.Parameter(torch.zeros(n_rows))  # how much item j is bought again
        self.features: TorchItemFeatures | None = None

    def user(self, values: torch.Tensor, offsets: torch.Tensor, *, sparse: bool = False) -> torch.Tensor:
        """Ψ(X) (B, d). ``sparse``: the item table's gradient from the pooling is sparse over the history
        rows (for RowAdam), not a dense table."""
        if sparse:
            pooled = F.embedding_bag(values, self.items.weight, offsets, mode="mean", include_last_offset=True,
                                     sparse=True)  # (B, d), as pool_vectors
        else:
            pooled = pool_vectors(self.items.weight, values, offsets)  # (B, d)
        parts = [pooled]
        if self.embed is not None:
            feats = self.features
            parts.append(pool_encoded(lambda rows: self.embed(feats.take(rows)), values, offsets))  # (B, F)
        return self.tower(torch.cat(parts, dim=1))  # (B, d) = Ψ(X)

    def logits(self, psi: torch.Tensor, values: torch.Tensor, offsets: torch.Tensor, *, repeat: bool,
               mask_input: bool = False) -> torch.Tensor:
        logits = psi @ self.items.weight.T + self.bias  # (B, N)
        if repeat:
            logits = logits + self.repeat_term(values, offsets, logits)  # (B, N)
        if mask_input:  # the softmax runs over the items not in X
            lengths = offsets[1:] - offsets[:-1]  # (B,)
            rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths)  # (nnz,)
            logits = logits.index_put((rows, values), torch.tensor(_MASKED, device=logits.device))
        logits[:, 0] = _MASKED
        return logits

    def repeat_term(self, values: torch.Tensor, offsets: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(B, N) w₀·log(1+count) + w₁·log(1+count among the last RECENT items) + (w₂ + r_j)·[j ∈ X]."""
        lengths = offsets[1:] - offsets[:-1]  # (B,)
        rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths)  # (nnz,)
        from_end = offsets[1:][rows] - 1 - torch.arange(values.numel(), device=values.device)  # (nnz,)
        ones = torch.ones_like(values, dtype=like.dtype)
        counts = torch.zeros_like(like).index_put_((rows, values), ones, accumulate=True)  # (B, N)
        recent = torch.zeros_like(like).index_put_((rows, values), ones * (from_end < RECENT), accumulate=True)
        seen = (counts > 0).to(like.dtype)  # (B, N)
        return (self.repeat[0] * torch.log1p(counts) + self.repeat[1] * torch.log1p(recent)
                + seen * (self.repeat[2] + self.repeat_item))  # (B, N)


class SoftmaxDNN(EmbeddingModel):
    """Softmax DNN over user histories with item-feature bags (registry name ``softmax-dnn``)."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "dim": IntRange(16, 128, log=True),
        "hidden": Choice(((64,), (128,), (256,), (256, 128))),
        "dropout": FloatRange(0.0, 0.5),
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "weight_decay": FloatRange(1e-8, 1e-3, log=True),
        "epochs": IntRange(5, 40),
    }

    def __init__(self, *, dim: int = 64, feature_dim: int = 16, hidden: Sequence[int] = (256,),
                 features: Sequence[str] | None = None, targets: str = "auto", holdout: float = 0.35,
                 repeat_bonus: bool | None = None, max_history: int | None = None, dropout: float = 0.2,
                 epochs: int = 30, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
                 patience: int | None = 5, length_buckets: bool = False, per_example: bool = False,
                 loss: str = "auto", full_softmax_max_items: int = FULL_SOFTMAX_MAX_ITEMS, num_negatives: int = 1024,
                 min_epoch_examples: int = MIN_EPOCH_EXAMPLES, valid_users: int = 0, device: str | None = None,
                 seed: int = 0, progress: bool | None = None) -> None:
        self.dim = check_positive_int("dim", dim)
        self.feature_dim = check_positive_int("feature_dim", feature_dim)
        self.hidden = tuple(check_positive_int("hidden", h) for h in hidden)
        self.features = None if features is None else tuple(str(f) for f in features)
        self.targets = check_choice("targets", targets, TARGETS)
        self.holdout = check_float("holdout", holdout, low=0.0, high=1.0, low_open=True)
        self.repeat_bonus = repeat_bonus
        self.max_history = None if max_history is None else check_positive_int("max_history", max_history)
        self.dropout = check_float("dropout", dropout, low=0.0, high=0.9)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.lr = check_float("lr", lr, low=0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, low=0.0)
        self.patience = None if patience is None else check_positive_int("patience", patience)
        self.length_buckets = bool(length_buckets)
        self.per_example = bool(per_example)
        self.loss = check_choice("loss", loss, ("auto", "full", "sampled"))
        self.full_softmax_max_items = check_positive_int("full_softmax_max_items", full_softmax_max_items)
        self.num_negatives = check_positive_int("num_negatives", num_negatives)
        self.min_epoch_examples = check_positive_int("min_epoch_examples", min_epoch_examples, minimum=0)
        self.valid_users = check_positive_int("valid_users", valid_users, minimum=0)
        self.device = device
        self.seed = seed
        self.progress = progress

    # fitting -----------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.mode_ = resolve_targets(self.targets, train)
        self.repeat_ = self.mode_ != "holdout" if self.repeat_bonus is None else bool(self.repeat_bonus)
        self.encoder_: FeatureEncoder | None = None
        self.item_features_: ItemFeatures | None = None
        if train.item_features is not None and self.features != ():
            self.encoder_ = FeatureEncoder(columns=None if self.features is None else list(self.features))
            self.encoder_.fit(train.item_features)
            self.item_features_ = self.encoder_.encode(train.item_features)
        elif self.features:
            raise DataError(f"features={self.features} were asked for but the training log has no item features.")
        device = resolve_device(self.device)
        # no valid: early stopping on a slice of train, the last event of up to valid_users users
        train, valid, history, carved = early_stopping_split(train, valid, self.seen_, max_users=self.valid_users,
                                                             seed=self.seed)
        maker = ExampleMaker(local_interactions(train), targets=self.mode_, holdout=self.holdout,
                             max_history=self.max_history, min_examples=self.min_epoch_examples)
        loss_fn = FullSoftmax(per_example=self.per_example)
        full = self.loss == "full" or (self.loss == "auto" and self.items_.n_ids <= self.full_softmax_max_items)
        self.loss_ = "full" if full else "sampled"
        counts = np.maximum(self.item_counts_.astype(np.float64), 0.0)
        logp = torch.as_tensor(np.log(np.maximum(counts, 1e-12) / max(counts.sum(), 1.0)), dtype=torch.float32,
                               device=device)  # log frequency of each item as a target (logQ)
        with seeded(self.seed) as rng:
            self._build(device)

            def batches(rng: np.random.Generator, epoch: int):
                ex = maker.draw(rng)
                return history_batches(ex, batch_size=self.batch_size, rng=rng,
                                       length_buckets=self.length_buckets).map(lambda b: b.to(device))

            def loss(b: HistoryBatch) -> torch.Tensor:
                if not full:
                    return self._sampled_loss(b, rng, logp)
                psi = self.net_.user(b.values, b.offsets)  # (B, d)
                logits = self.net_.logits(psi, b.values, b.offsets, repeat=self.repeat_,
                                          mask_input=self.mode_ == "holdout")  # (B, N)
                return loss_fn(logits, example=b.example, target=b.target)

            validate = None
            if valid is not None and len(valid):
                validate = lambda: valid_precision(self._scores, history, valid, k=10,  # noqa: E731
                                                   exclude_seen=carved or self.mode_ == "holdout")
            config = TrainConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                                 patience=self.patience if validate else None, progress=self.progress)
            # sampled softmax: a batch touches its history, target and negative rows of the item table (and
            # of its bias and repeat rows) only; sparse row gradients + RowAdam (lazy Adam) update those rows
            # alone, so a step no longer costs O(catalogue). Adam's weight decay is dense: it keeps dense tables.
            self.sparse_ = not full and self.weight_decay == 0
            tables = (self.net_.items.weight, self.net_.bias, self.net_.repeat_item) if self.sparse_ else ()
            self.history_ = train_loop(self.net_, batches=batches, loss=loss, config=config, rng=rng,
                                       validate=validate, desc="softmax-dnn",
                                       optimizer=make_optimizer(self.net_.parameters(), config, sparse=tables))
        self.net_.cpu().eval()
        if self.item_features_ is not None:  # plain tensors, not buffers: .cpu() above leaves them behind
            self.net_.features = self.item_features_.to_torch(torch.device("cpu"))
        self._device = torch.device("cpu")

    def _sampled_loss(self, b: HistoryBatch, rng: np.random.Generator, logp: torch.Tensor) -> torch.Tensor:
        """Softmax over the batch's targets + ``num_negatives`` uniform items, logQ-corrected; the bias and
        the repeat term are added per (example, candidate) pair, and in holdout mode the example's own
        history items are masked, as in the full softmax."""
        n, dev = self.items_.size, b.values.device
        negs = torch.as_tensor(rng.integers(1, n, size=self.num_negatives), device=dev)  # (M,)
        ids = torch.cat([b.target, negs])  # (T + M,)
        uniq, inv = torch.unique(ids, return_inverse=True)  # (U,), (T + M,)
        sparse = self.sparse_
        cand = gather_rows(self.net_.items.weight, ids) if sparse else self.net_.items(ids)  # (T + M, d)
        psi = self.net_.user(b.values, b.offsets, sparse=sparse)  # (B, d)
        t = b.target.numel()
        offset = (gather_rows(self.net_.bias, ids) if sparse else self.net_.bias[ids])[None, :]  # (1, T + M)
        mask = None
        if self.repeat_ or self.mode_ == "holdout":
            lookup = torch.full((n,), -1, dtype=torch.int64, device=dev)
            lookup[uniq] = torch.arange(uniq.numel(), device=dev)
            lengths = b.offsets[1:] - b.offsets[:-1]  # (B,)
            rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=dev), lengths)  # (nnz,)
            col = lookup[b.values]  # (nnz,) the history item's candidate column, -1 if not a candidate
            keep = col >= 0
            like = torch.zeros(lengths.numel(), uniq.numel(), device=dev)  # (B, U)
            ones = torch.ones(int(keep.sum()), device=dev)
            counts = like.index_put((rows[keep], col[keep]), ones, accumulate=True)
            seen = counts > 0  # (B, U)
            if self.repeat_:
                from_end = (b.offsets[1:][rows] - 1 - torch.arange(b.values.numel(), device=dev))[keep]
                recent = like.index_put((rows[keep], col[keep]), ones * (from_end < RECENT), accumulate=True)
                w = self.net_.repeat
                r = gather_rows(self.net_.repeat_item, uniq) if sparse else self.net_.repeat_item[uniq]  # (U,)
                rep = (w[0] * torch.log1p(counts) + w[1] * torch.log1p(recent)
                       + seen * (w[2] + r[None, :]))  # (B, U)
                offset = offset + rep[:, inv]  # (B, T + M)
            if self.mode_ == "holdout":
                mask = seen[:, inv]  # (B, T + M): the softmax runs over items not in X
        negative_logq = torch.full((negs.numel(),), float(np.log(negs.numel() / (n - 1))), device=dev)
        logq = torch.cat([logp[b.target] + float(np.log(t)), negative_logq])  # (T + M,)
        # one logit row per example (B x (T + M)), not per target: the same softmax as SampledSoftmax's
        # (T, T + M) rows with groups=example and accidental hits removed (grouped_sampled_nll)
        logits = psi @ cand.T + offset - logq[None, :]  # (B, T + M)
        nll = grouped_sampled_nll(logits, b.example, inv, mask)  # (T,)
        if not self.per_example:
            return nll.mean()
        per = torch.bincount(b.example, minlength=psi.shape[0]).to(nll.dtype)  # (B,) targets per example
        return (nll / per[b.example]).sum() / (per > 0).sum()

    def _build(self, device: torch.device) -> None:
        self.net_ = SoftmaxNet(self.items_.size, dim=self.dim, feature_dim=self.feature_dim, hidden=list(self.hidden),
                               dropout=self.dropout, encoder=self.encoder_).to(device)
        if self.item_features_ is not None:
            self.net_.features = self.item_features_.to_torch(device)
        self._device = device

    # embeddings ---------------------------------------------------------------------------------
    def _inputs(self, histories: Ragged) -> tuple[torch.Tensor, torch.Tensor]:
        """The history as trained on: its last ``max_history`` items, as (values, offsets) tensors."""
        if self.max_history is not None:
            histories = histories.tail(self.max_history)
        return histories.to_torch(self._device)

    @torch.no_grad()
    def _psi(self, histories: Ragged) -> torch.Tensor:
        eval_mode(self.net_)
        values, offsets = self._inputs(histories)
        return self.net_.user(values, offsets)  # (B, d)

    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self._psi(histories).cpu().numpy()

    def _item_vectors(self) -> np.ndarray:
        return self.net_.items.weight.detach().cpu().numpy()

    def _query_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        psi = self._user_vectors(user_rows, histories)
        return np.hstack([psi, np.ones((psi.shape[0], 1), dtype=np.float32)])  # bias column

    def _candidate_vectors(self) -> np.ndarray:
        return np.hstack([self._item_vectors(), self.net_.bias.detach().cpu().numpy()[:, None]])

    @torch.no_grad()
    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        values, offsets = self._inputs(histories)
        psi = self._psi(histories)
        return self.net_.logits(psi, values, offsets, repeat=self.repeat_).cpu().numpy()

    def top_k(self, user_rows: np.ndarray, histories: Ragged, k: int, *, exclude: Ragged | None = None,
              allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.repeat_:  # the repeat term depends on the history: score every item
            return Recommender.top_k(self, user_rows, histories, k, exclude=exclude, allow=allow)
        return super().top_k(user_rows, histories, k, exclude=exclude, allow=allow)

    # persistence ------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        if self.item_features_ is not None:
            state.update(self.item_features_.to_state("item_features"))
        return state

    def _get_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"mode": self.mode_, "repeat": self.repeat_}
        if self.encoder_ is not None:
            extra["encoder"] = self.encoder_.to_json()
        return extra

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.mode_, self.repeat_ = extra["mode"], bool(extra["repeat"])
        self.encoder_, self.item_features_ = None, None
        if "encoder" in extra:
            self.encoder_ = FeatureEncoder.from_json(extra["encoder"])
            self.item_features_ = ItemFeatures.from_state("item_features", state, self.encoder_.n_bags)
        self._build(torch.device("cpu"))
        weights = {k[4:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("net.")}
        try:
            self.net_.load_state_dict(weights)
        except RuntimeError as exc:
            raise ModelFileError(f"the stored softmax-dnn weights do not fit the model ({exc}).") from None
        self.net_.eval()
