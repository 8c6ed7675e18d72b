"""Two-tower model, YouTube-DNN style: one content item tower for history items and candidates.

    v(i)  = ContentTower(features(i)) (+ id embedding of i when i was seen in training)   # (d,)
    u(X)  = ReLU-MLP( mean_{i∈X} v(i) )       X = a VARIABLE number of history items      # (d,)
    score = u(X) · v(j)

The history is values + offsets: each batch encodes its distinct items once and pools them with
``embedding_bag(mode="mean")``, so a user with 1,000 items costs 1,000 ids, not batch x 1,000 padding
(``pooling="padded"`` does the padded gather-and-mask instead; it exists for benchmarks/bench_ragged.py).

Loss (one choice, made in ``_loss``): ``"full"`` softmax over the whole catalogue (small catalogues),
``"sampled"`` in-batch negatives (+ ``num_negatives`` uniform ones) with logQ correction and
accidental-hit masking (large catalogues), ``"auto"``: full up to ``full_softmax_max_items`` items.

Training: an epoch is at least ``min_epoch_examples`` examples (default ``MIN_EPOCH_EXAMPLES`` = 5,000: fresh
holdout draws when the log has few users, history_batches.py), so the number of optimizer steps does not
shrink with the number of users; ``valid_users`` > 0 early-stops on a slice carved from train when ``fit``
gets no ``valid``. The embedding width ``dim`` is 128 by default: chosen over 64 (the earlier default),
``id_dropout=0.2`` and a 10,000-example floor on six validation parts by the worst-case rule
(docs/benchmarks.md, "two-tower: 128 dimensions"); with holdout targets (a log without baskets) an
example holds out ``holdout`` = 35 % of the user's items as its targets, as in softmax-dnn (same section).

Cold start: an item with features and no interactions gets its vector from the features alone. Items of
the training catalogue without an event (``from_file(..., item_features=...)`` adds every item of the
file) are left out of the training softmax and get no id part; items can also be added after training::

    model.add_items(new_items_frame, id_col="item")       # then similar_items / recommend include them
    model.embed_items(frame, id_col="item")               # (n, d) vectors without adding anything

Features come from ``train.item_features``; the encoded features and the encoder (vocabularies,
numeric statistics, text hashing) are saved with the model, so a loaded model needs no training data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import (
    DataError,
    InvalidParameterError,
    ModelFileError,
    check_choice,
    check_float,
    check_positive_int,
)
from embrec.models.base import EmbeddingModel
from embrec.models.distributed import local_interactions
from embrec.models.history_batches import (
    MIN_EPOCH_EXAMPLES,
    TARGETS,
    ExampleMaker,
    HistoryBatch,
    early_stopping_split,
    history_batches,
    valid_precision,
)
from embrec.models.search import Choice, FloatRange, IntRange, Param
from embrec.models.training import TrainConfig, resolve_device, seeded, train_loop
from embrec.nn import eval_mode
from embrec.nn.inference import DenseStack
from embrec.nn.softmax import FullSoftmax, SampledSoftmax
from embrec.nn.towers import ContentTower, FeatureEncoder, ItemFeatures, mlp, pool_vectors

logger = logging.getLogger(__name__)

_MASKED = -1e9


class TwoTowerNet(nn.Module):
    def __init__(self, encoder: FeatureEncoder, *, n_id_rows: int, dim: int, feature_dim: int,
                 item_hidden: list[int], user_hidden: list[int], id_dropout: float, dropout: float) -> None:
        super().__init__()
        self.items = ContentTower(encoder, feature_dim=feature_dim, hidden=item_hidden, out_dim=dim,
                                  n_id_rows=n_id_rows, id_dropout=id_dropout, dropout=dropout)
        self.user_mlp = mlp([dim, *user_hidden, dim], dropout=dropout)

    def user_ragged(self, item_vecs: torch.Tensor, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """item_vecs (U, d) indexed by ``values`` -> (B, d)."""
        return self.user_mlp(pool_vectors(item_vecs, values, offsets))  # (B, d)

    def user_padded(self, item_vecs: torch.Tensor, padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The padded alternative: item_vecs (U, d) indexed by padded (B, L), mask (B, L)."""
        gathered = item_vecs[padded] * mask[..., None]  # (B, L, d)
        mean = gathered.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, d)
        return self.user_mlp(mean)  # (B, d)


class TwoTower(EmbeddingModel):
    """Content-based two-tower retrieval model (registry name ``two-tower``)."""

    needs = ("item_features",)

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "dim": IntRange(16, 128, log=True),
        "item_hidden": Choice(((64,), (128,), (256,))),
        "user_hidden": Choice(((64,), (128,), (256,))),
        "id_dropout": FloatRange(0.0, 0.9),
        "temperature": FloatRange(0.05, 1.0, log=True),
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "epochs": IntRange(5, 40),
    }

    def __init__(self, *, dim: int = 128, feature_dim: int = 16, item_hidden: Sequence[int] = (128,),
                 user_hidden: Sequence[int] = (128,), item_ids: bool = True, id_dropout: float = 0.5,
                 features: Sequence[str] | None = None, loss: str = "auto", full_softmax_max_items: int = 20000,
                 num_negatives: int = 0, temperature: float = 1.0, targets: str = "auto", holdout: float = 0.35,
                 max_history: int | None = None, pooling: str = "ragged", dropout: float = 0.0, epochs: int = 30,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0, patience: int | None = 5,
                 length_buckets: bool = False, min_epoch_examples: int = MIN_EPOCH_EXAMPLES, valid_users: int = 0,
                 device: str | None = None, seed: int = 0, progress: bool | None = None) -> None:
        self.dim = check_positive_int("dim", dim)
        self.feature_dim = check_positive_int("feature_dim", feature_dim)
        self.item_hidden = tuple(check_positive_int("item_hidden", h) for h in item_hidden)
        self.user_hidden = tuple(check_positive_int("user_hidden", h) for h in user_hidden)
        self.item_ids = bool(item_ids)
        self.id_dropout = check_float("id_dropout", id_dropout, low=0.0, high=1.0)
        self.features = None if features is None else tuple(str(f) for f in features)
        self.loss = check_choice("loss", loss, ("auto", "full", "sampled"))
        self.full_softmax_max_items = check_positive_int("full_softmax_max_items", full_softmax_max_items)
        self.num_negatives = check_positive_int("num_negatives", num_negatives, minimum=0)
        self.temperature = check_float("temperature", temperature, low=0.0, low_open=True)
        self.targets = check_choice("targets", targets, TARGETS)
        self.holdout = check_float("holdout", holdout, low=0.0, high=1.0, low_open=True)
        self.max_history = None if max_history is None else check_positive_int("max_history", max_history)
        self.pooling = check_choice("pooling", pooling, ("ragged", "padded"))
        self.dropout = check_float("dropout", dropout, low=0.0, high=0.9)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.lr = check_float("lr", lr, low=0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, low=0.0)
        self.patience = None if patience is None else check_positive_int("patience", patience)
        self.length_buckets = bool(length_buckets)
        self.min_epoch_examples = check_positive_int("min_epoch_examples", min_epoch_examples, minimum=0)
        self.valid_users = check_positive_int("valid_users", valid_users, minimum=0)
        self.device = device
        self.seed = seed
        self.progress = progress

    # fitting -----------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.item_features is None:
            raise DataError("the two-tower model needs item features (train.item_features is None); "
                            "use a log with item features, or softmax-dnn / a factorization model.")
        self.encoder_ = FeatureEncoder(columns=None if self.features is None else list(self.features))
        self.encoder_.fit(train.item_features)
        self.item_features_ = self.encoder_.encode(train.item_features)
        empty = self.item_features_.empty_rows()
        if empty.size > 1:
            logger.warning("two-tower: %d items have no feature value; their vectors rest on their id embedding.",
                           empty.size - 1)
        self.n_id_rows_ = self.items_.size if self.item_ids else 0
        # no valid: early stopping on a slice of train, the last event of up to valid_users users
        train, valid, history, carved = early_stopping_split(train, valid, self.seen_, max_users=self.valid_users,
                                                             seed=self.seed)
        maker = ExampleMaker(local_interactions(train), targets=self.targets, holdout=self.holdout,
                             max_history=self.max_history, min_examples=self.min_epoch_examples)
        self.mode_ = maker.mode
        counts = self.item_counts_.astype(np.float64)  # of the whole train, carved slice included
        self._logp = torch.as_tensor(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)), dtype=torch.float32)
        # catalogue items without a training event (e.g. from an item features file): never a softmax
        # candidate while training, and no id part afterwards, so their vectors come from their features
        cold = np.flatnonzero(counts[1:] == 0) + 1
        self._cold = torch.as_tensor(cold) if cold.size else None
        full = self.loss == "full" or (self.loss == "auto" and self.items_.n_ids <= self.full_softmax_max_items)
        self.loss_ = "full" if full else "sampled"
        device = resolve_device(self.device)
        with seeded(self.seed) as rng:
            self._build(device)
            self._logp = self._logp.to(device)
            loss_fn = FullSoftmax(temperature=self.temperature) if full else SampledSoftmax(temperature=self.temperature)
            padded = self.pooling == "padded"

            def batches(rng: np.random.Generator, epoch: int):
                ex = maker.draw(rng)
                return history_batches(ex, batch_size=self.batch_size, rng=rng, length_buckets=self.length_buckets,
                                       padded=padded).map(lambda b: b.to(device))

            def loss(b: HistoryBatch) -> torch.Tensor:
                return self._loss(loss_fn, b, rng)

            validate = None
            if valid is not None and len(valid):
                def validate() -> float:
                    self._item_cache = None  # the weights moved since the last epoch
                    return valid_precision(self._scores, history, valid, k=10,
                                           exclude_seen=carved or self.mode_ == "holdout")
            config = TrainConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                                 patience=self.patience if validate else None, progress=self.progress)
            self.history_ = train_loop(self.net_, batches=batches, loss=loss, config=config, rng=rng,
                                       validate=validate, desc="two-tower")
        self._build(torch.device("cpu"), weights=self.net_.state_dict())
        if self._cold is not None and self.net_.items.ids is not None:
            with torch.no_grad():
                self.net_.items.ids.weight[self._cold] = 0.0
            logger.info("two-tower: %d catalogue items have no training event; their vectors come from their "
                        "features alone", self._cold.numel())

    def _user(self, vecs: torch.Tensor, inverse: torch.Tensor, b: HistoryBatch) -> torch.Tensor:
        """(B, d) user vectors from item vectors ``vecs`` and the batch's history rows mapped by ``inverse``
        (a lookup from item row to a row of vecs)."""
        if b.padded is None:
            return self.net_.user_ragged(vecs, inverse[b.values], b.offsets)
        return self.net_.user_padded(vecs, inverse[b.padded], b.padded > 0)

    def _loss(self, loss_fn, b: HistoryBatch, rng: np.random.Generator) -> torch.Tensor:
        n = self.items_.size
        if isinstance(loss_fn, FullSoftmax):
            rows = torch.arange(n, device=b.values.device)
            vecs = self.net_.items(rows)  # (N, d)
            user = self._user(vecs, rows, b)  # (B, d)
            logits = user @ vecs.T  # (B, N)
            logits[:, 0] = _MASKED
            if self._cold is not None:
                logits[:, self._cold.to(logits.device)] = _MASKED
            if self.mode_ == "holdout":  # the softmax runs over the items not in X
                lengths = b.offsets[1:] - b.offsets[:-1]  # (B,)
                rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
                logits = logits.index_put((rows, b.values), torch.tensor(_MASKED, device=logits.device))
            return loss_fn(logits, example=b.example, target=b.target)
        negs = torch.as_tensor(rng.integers(1, n, size=self.num_negatives), device=b.values.device)
        hist = b.values if b.padded is None else b.padded.reshape(-1)
        uniq, inv = torch.unique(torch.cat([hist, b.target, negs]), return_inverse=True)  # (U,)
        vecs = self.net_.items(uniq)  # (U, d)
        lookup = torch.zeros(n, dtype=torch.int64, device=uniq.device)
        lookup[uniq] = torch.arange(uniq.numel(), device=uniq.device)
        user = self._user(vecs, lookup, b)  # (B, d)
        t = b.target.numel()
        pos_logq = self._logp[b.target] + float(np.log(t))  # log expected in-batch count, (T,)
        kwargs: dict[str, Any] = {"positive_logq": pos_logq, "groups": b.example}
        if self.num_negatives:
            kwargs.update(negatives=vecs[lookup[negs]], negative_ids=negs,
                          negative_logq=torch.full((negs.numel(),), float(np.log(negs.numel() / (n - 1))),
                                                   device=negs.device))
        return loss_fn(user[b.example], vecs[lookup[b.target]], b.target, **kwargs)

    def _build(self, device: torch.device, weights: dict[str, torch.Tensor] | None = None) -> None:
        self.net_ = TwoTowerNet(self.encoder_, n_id_rows=self.n_id_rows_, dim=self.dim, feature_dim=self.feature_dim,
                                item_hidden=list(self.item_hidden), user_hidden=list(self.user_hidden),
                                id_dropout=self.id_dropout, dropout=self.dropout)
        if weights is not None:
            self.net_.load_state_dict({k: v.cpu() for k, v in weights.items()})
        self.net_.to(device)
        self.net_.items.features = self.item_features_.to_torch(device)
        self._device = device
        self._item_cache: np.ndarray | None = None
        self.__dict__.pop("_indexes", None)

    # embeddings ---------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        if self._item_cache is None:  # computed once per weights (the cached path is a served request's)
            with torch.no_grad():
                eval_mode(self.net_)
                rows = torch.arange(self.items_.size, device=self._device)
                vecs = self.net_.items(rows)  # (N, d)
                vecs[0] = 0.0
                self._item_cache = vecs.cpu().numpy()
        return self._item_cache

    def _user_stack(self) -> DenseStack:
        """The user MLP as NumPy arrays, copied once per item cache: whatever drops the item cache (a
        refit, an epoch's validation, a load, ``add_items``) drops this copy too."""
        vecs = self._item_vectors()
        held = self.__dict__.get("_user_stack_of")
        if held is None or held[0] is not vecs:
            held = self._user_stack_of = (vecs, DenseStack.from_sequential(self.net_.user_mlp))
        return held[1]

    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        """(B, d) MLP(mean of the history's item vectors), in NumPy: the item vectors are cached and a
        served request is one row, for which torch's per-op dispatch costs more than the arithmetic."""
        vecs = self._item_vectors()  # (N, d)
        if self.max_history is not None:  # the history as trained on: its last max_history items
            histories = histories.tail(self.max_history)
        if len(histories) == 1:  # one user (a served request): a gather and a mean
            rows = histories.values
            pooled = vecs[rows].sum(axis=0, keepdims=True)  # (1, d); an empty history pools to 0
            pooled /= max(rows.size, 1)
        else:
            with torch.no_grad():
                values, offsets = histories.to_torch()
                pooled = pool_vectors(torch.from_numpy(vecs), values, offsets).numpy()  # (B, d)
        return self._user_stack()(pooled)  # (B, d)

    # cold items ---------------------------------------------------------------------------------
    def embed_items(self, frame: pd.DataFrame, *, id_col: str = "item") -> np.ndarray:
        """(n, d) vectors of the frame's items from their features alone (nothing is added)."""
        self._check_fitted()
        feats, _ = self._encode_new(frame, id_col, allow_known=True)
        return self._embed_features(feats)[1:]

    def add_items(self, frame: pd.DataFrame, *, id_col: str = "item") -> TwoTower:
        """Add new items (one row each: ``id_col`` plus the training feature columns) to the catalogue;
        their vectors come from their features. Returns self."""
        self._check_fitted()
        feats, raw = self._encode_new(frame, id_col, allow_known=False)
        self.items_ = IdVocab(np.concatenate([self.items_.raw_ids, raw]), name=self.items_.name)
        self.item_counts_ = np.concatenate([self.item_counts_, np.zeros(raw.size, dtype=self.item_counts_.dtype)])
        self.item_features_ = self.item_features_.concat(feats)
        self.net_.items.features = self.item_features_.to_torch(self._device)
        self._item_cache = None
        self.__dict__.pop("_indexes", None)
        logger.info("two-tower: added %d cold items (catalogue now %d)", raw.size, self.items_.n_ids)
        return self

    def _encode_new(self, frame: pd.DataFrame, id_col: str, *, allow_known: bool) -> tuple[ItemFeatures, np.ndarray]:
        if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
            raise InvalidParameterError(f"items must be a non-empty pandas DataFrame with column {id_col!r} and the "
                                        f"feature columns; received {type(frame).__name__}.")
        if id_col not in frame.columns:
            raise DataError(f"id_col={id_col!r} is not a column of the item frame; its columns are {list(frame.columns)}.")
        raw = frame[id_col].to_numpy()
        raw = raw.astype(np.int64) if self.items_.kind == "int" else raw.astype(str).astype(object)
        if pd.Index(raw).has_duplicates:
            raise DataError(f"the item frame must hold each id once; {id_col!r} repeats {pd.Index(raw)[pd.Index(raw).duplicated()][0]!r}.")
        if not allow_known:
            known = [r for r in raw if r in self.items_]
            if known:
                raise InvalidParameterError(f"add_items takes new items only; item {known[0]!r} is already in the catalogue.")
        vocab = IdVocab(raw, name="item")
        feats = self.encoder_.encode_frame(frame, id_col=id_col, vocab=vocab)
        empty = feats.empty_rows()
        empty = empty[empty > 0]
        if empty.size:
            raise DataError(f"item {raw[empty[0] - 1]!r} has no value in any feature column {self.encoder_.columns_used_}; "
                            "a new item needs features to get an embedding.")
        return feats, raw

    @torch.no_grad()
    def _embed_features(self, feats: ItemFeatures) -> np.ndarray:
        eval_mode(self.net_)
        tower = self.net_.items
        out = tower.mlp(tower.embed(feats.to_torch(self._device)))  # (n, d), no id part
        out[0] = 0.0
        return out.cpu().numpy()

    # persistence ------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        state.update(self.item_features_.to_state("item_features"))
        return state

    def _get_extra(self) -> dict[str, Any]:
        return {"encoder": self.encoder_.to_json(), "n_id_rows": self.n_id_rows_, "mode": self.mode_,
                "loss": self.loss_}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.encoder_ = FeatureEncoder.from_json(extra["encoder"])
        self.item_features_ = ItemFeatures.from_state("item_features", state, self.encoder_.n_bags)
        self.n_id_rows_, self.mode_, self.loss_ = int(extra["n_id_rows"]), extra["mode"], extra["loss"]
        weights = {k[4:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("net.")}
        try:
            self._build(torch.device("cpu"), weights=weights)
        except RuntimeError as exc:
            raise ModelFileError(f"the stored two-tower weights do not fit the model ({exc}).") from None
