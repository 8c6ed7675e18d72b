"""The one small base class every embrec model implements.

    model = SomeModel(factors=64, seed=0).fit(train, valid=valid)      # returns self
    recs = model.recommend(users=["12346"], k=5)                        # raw ids in, raw ids out
    recs = model.recommend(histories=[["85123A", "71053"]], k=5)       # any user, new ones too
    model.similar_items(["85123A"], k=10, measure="cosine")            # embedding models
    model.user_embedding(history=["85123A", "71053"])                  # Ψ(X) of anyone
    model.save("runs/mf");  model = embrec.load("runs/mf")

Subclasses implement ``_fit`` and ``_scores`` (full score rows for a few users); embedding models
(``EmbeddingModel``) implement ``_user_vectors`` / ``_item_vectors`` instead and get retrieval through
an index, similar items, and embeddings for free. Learned state ends in ``_``; ``__init__`` only stores
keyword-only hyper-parameters, so ``get_params`` is read from its signature.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import (
    DataError,
    InvalidParameterError,
    NotFittedError,
    check_choice,
    check_positive_int,
)
from embrec.index.auto import build_index, check_index_config
from embrec.index.topk import top_k_rows

logger = logging.getLogger(__name__)


@dataclass
class Recommendations:
    """Top-k results: ``ids`` (B, k) raw ids (None where nothing was left), ``scores`` (B, k), ``rows`` (B, k)."""

    ids: np.ndarray
    scores: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def to_records(self, labels: np.ndarray | None = None) -> list[list[dict[str, Any]]]:
        """One list per query of {"item": raw id, "score": float}, best first, JSON-ready; given
        ``labels`` (a model's ``item_labels_``, by item row) each record also has "label" (None when the
        item has none)."""
        out = []  # tolist(): Python scalars in one call each, not a numpy scalar per element
        for ids, scores, rows in zip(self.ids.tolist(), np.asarray(self.scores, dtype=np.float64).tolist(),
                                     np.asarray(self.rows).tolist()):
            recs = [{"item": _plain(i), "score": s} for i, s in zip(ids, scores) if i is not None]
            if labels is not None:  # label_of, inline: ten calls a served request
                n = len(labels)
                for rec, row in zip(recs, rows):
                    rec["label"] = (str(labels[row]) or None) if 0 < row < n else None
            out.append(recs)
        return out


class Recommender(ABC):
    """Base of every model: fit, recommend, save/load."""

    #: explicit-rating models set this and implement ``predict``
    predicts_ratings: bool = False
    #: what the model needs of its training data beyond users and items, any of ``NEEDS``: "ratings"
    #: (a rating column holding ratings, not quantities), "item_features", "timestamps", "groups"
    #: (transactions). ``benchmark`` skips a model whose needs the data does not meet (``unmet_need``).
    needs: ClassVar[tuple[str, ...]] = ()

    # hyper-parameters ----------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in sig.parameters if name != "self"}

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if sig.parameters[k].default != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    # fitting --------------------------------------------------------------------------------
    def fit(self, train: Interactions, *, valid: Interactions | None = None) -> Recommender:
        """Learn from ``train`` (validation on ``valid`` if the model uses it); returns self."""
        if not isinstance(train, Interactions):
            raise InvalidParameterError(f"train must be an Interactions; received {type(train).__name__}.")
        if len(train) == 0 or train.n_items == 0:
            raise DataError("train must hold at least one event with a known item; received an empty table.")
        if valid is not None and (valid.users is not train.users or valid.items is not train.items):
            valid = valid.reencode(train.users, train.items)
        self.users_: IdVocab = train.users
        self.items_: IdVocab = train.items
        self.seen_: Ragged = train.user_histories()
        self.item_counts_: np.ndarray = train.item_counts()
        self.fingerprint_: str = train.fingerprint()
        from embrec.models.distributed import check_same_data

        check_same_data(self.fingerprint_)  # under torch.distributed: every rank encodes the same log
        self.history_: list[dict[str, float]] = []
        self.metrics_: dict[str, Any] = {}
        #: (items.size,) display labels by item row (titles, descriptions) when the data has them
        self.item_labels_: np.ndarray | None = None if train.item_labels is None else train.item_labels.copy()
        self.__dict__.pop("_indexes", None)  # indexes built on the previous fit's vectors
        self._fit(train, valid)
        return self

    @abstractmethod
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Learn the model's state from ``train`` (vocabularies, seen_ and item_counts_ are set)."""

    @abstractmethod
    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        """(B, items.size) float scores for users (row 0 = not a known user) with these item histories."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(train) first.")

    # queries --------------------------------------------------------------------------------
    def queries(self, users: Sequence[Any] | None = None,
                histories: Sequence[Sequence[Any]] | None = None) -> tuple[np.ndarray, Ragged]:
        """Encode raw users (-> rows, their training histories) or raw histories (-> rows 0, item rows)."""
        self._check_fitted()
        if (users is None) == (histories is None):
            raise InvalidParameterError("give exactly one of users= or histories=; received "
                                        f"{'both' if users is not None else 'neither'}.")
        if users is not None:
            if type(users) is not list and (isinstance(users, (str, bytes)) or np.ndim(users) == 0):
                raise InvalidParameterError(f"users must be a list of raw user ids; received {users!r}.")
            rows = self.users_.encode(list(users), unknown="error")
            return rows, self.seen_.select(rows)
        if isinstance(histories, (str, bytes)) or not all(_is_id_list(h) for h in histories):
            raise InvalidParameterError("histories must be a list of lists of raw item ids; "
                                        f"received {histories!r:.60}.")
        lists = []
        for h in histories:
            if len(h) == 0:
                raise InvalidParameterError("each history must hold at least one item id; received an empty history.")
            lists.append(self.items_.encode(list(h), unknown="error"))
        return np.zeros(len(lists), dtype=np.int64), Ragged.from_lists(lists)

    def recommend(self, users: Sequence[Any] | None = None, *, histories: Sequence[Sequence[Any]] | None = None,
                  k: int = 10, exclude_seen: bool = False, items: Sequence[Any] | None = None,
                  exclude_items: Sequence[Any] | None = None) -> Recommendations:
        """Top-``k`` items for known ``users`` (raw ids) or for ``histories`` (lists of raw item ids, any
        user, new ones included). ``exclude_seen`` drops the items of the user's history.

        ``items`` (raw item ids) restricts every query to those candidates (an allow-list, e.g. in-stock
        only), ``exclude_items`` removes those (a deny-list); both act inside the top-k search, so k
        results come back whenever k allowed items remain (fewer only when fewer remain: the missing
        slots have id None). An id the model does not know raises UnknownIdError naming it."""
        user_rows, hist = self.queries(users, histories)
        k = self._check_k(k)
        allow, deny = self.restriction(items, exclude_items)
        exclude = hist if exclude_seen else None
        if deny is not None:
            exclude = with_denied(exclude, deny, len(user_rows))
        rows, scores = self.top_k(user_rows, hist, k, exclude=exclude, allow=allow)
        return Recommendations(self.items_.decode(np.maximum(rows, 0)), scores, rows)

    def restriction(self, items: Sequence[Any] | None, exclude_items: Sequence[Any] | None
                    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Item rows of an allow-list and a deny-list of raw ids (None where not given)."""
        out = []
        for name, ids in (("items", items), ("exclude_items", exclude_items)):
            if ids is None:
                out.append(None)
                continue
            if isinstance(ids, (str, bytes)) or np.ndim(ids) != 1:
                raise InvalidParameterError(f"{name} must be a list of raw item ids; received {ids!r:.60}.")
            if name == "items" and len(ids) == 0:
                raise InvalidParameterError("items must hold at least one item id; received an empty list.")
            out.append(self.items_.encode(list(ids), unknown="error") if len(ids) else None)
        return out[0], out[1]

    def _check_k(self, k: Any) -> int:
        """``k`` checked (a positive integer) and clamped to the catalogue: asking for more items than the
        model knows returns all of them, ranked (as implicit and most peers do), not an error."""
        return min(check_positive_int("k", k), self.items_.n_ids)

    def top_k(self, user_rows: np.ndarray, histories: Ragged, k: int, *, exclude: Ragged | None = None,
              allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) item rows and scores on dense rows, the engine behind ``recommend`` and the protocols;
        ``allow`` (item rows) restricts the candidates of every query."""
        banned = None
        if allow is not None:
            banned = np.ones(self.items_.size, dtype=bool)
            banned[allow] = False
        n = self.items_.size
        batch = max(1, min(4096, 2**25 // n))
        out_r = np.zeros((len(user_rows), k), dtype=np.int64)
        out_s = np.zeros((len(user_rows), k), dtype=np.float32)
        for s in range(0, len(user_rows), batch):
            e = min(s + batch, len(user_rows))
            sc = np.array(self._scores(user_rows[s:e], histories.select(np.arange(s, e))), dtype=np.float32)
            sc[:, 0] = -np.inf
            if exclude is not None:
                part = exclude.select(np.arange(s, e))
                sc[part.row_ids, part.values] = -np.inf
            if banned is not None:
                sc[:, banned] = -np.inf
            out_r[s:e], out_s[s:e] = top_k_rows(sc, k)
        out_r[~np.isfinite(out_s)] = 0
        return out_r, out_s

    def scores(self, users: Sequence[Any] | None = None, *,
               histories: Sequence[Sequence[Any]] | None = None) -> np.ndarray:
        """(B, n_items) scores in the order of ``items_.raw_ids`` (small batches only)."""
        user_rows, hist = self.queries(users, histories)
        return np.asarray(self._scores(user_rows, hist))[:, 1:]

    def next_item_scores(self, user_rows: np.ndarray, prefixes: Ragged) -> np.ndarray:
        """(B, items.size) scores for the next item of a transaction, on dense rows (the retail-next protocol).

        ``prefixes`` row b holds the items bought before, in this transaction, in order (possibly none;
        0 marks an item unknown to training); ``user_rows`` 0 is a user unknown to training. The caller
        removes already-bought items itself. This default ignores the order: a known user gets the
        scores of their training history; an unknown user the scores of the prefix taken as a
        history, or training popularity while the prefix is empty. Sequence models override it.
        """
        self._check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64)
        out = np.empty((len(user_rows), self.items_.size), dtype=np.float32)
        keep = prefixes.values != 0
        clean = Ragged.from_lengths(prefixes.values[keep], np.bincount(prefixes.row_ids[keep], minlength=len(prefixes)))
        known = user_rows > 0
        anonymous = ~known & (clean.lengths > 0)
        empty = ~known & (clean.lengths == 0)
        if known.any():
            out[known] = self._scores(user_rows[known], self.seen_.select(user_rows[known]))
        if anonymous.any():
            out[anonymous] = self._scores(np.zeros(int(anonymous.sum()), dtype=np.int64),
                                          clean.select(np.flatnonzero(anonymous)))
        if empty.any():
            out[empty] = self.item_counts_.astype(np.float32)
        return out

    # persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model directory atomically (config.json, vocabularies, weights.safetensors...)."""
        from embrec.models.io import save_model

        return save_model(self, path)

    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to store in weights.safetensors (besides the base class's own)."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        """Restore from ``_get_state`` arrays and ``_get_extra`` JSON."""

    def _get_extra(self) -> dict[str, Any]:
        """Learned JSON-able state (besides arrays), e.g. feature vocabularies."""
        return {}

    # what the model directory's extra.json holds: the subclass's extra state and the base class's own
    # (the item labels), so a subclass overriding _get_extra / _set_state need not know about labels
    def _extra_state(self) -> dict[str, Any]:
        extra = dict(self._get_extra())
        labels = getattr(self, "item_labels_", None)
        if labels is not None:  # items added after fitting (two-tower add_items) have no label: ""
            names = [str(x) for x in np.asarray(labels, dtype=object)[1 : self.items_.size]]
            extra[LABELS_KEY] = names + [""] * (self.items_.n_ids - len(names))
        return extra

    def _restore_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        extra = dict(extra)
        labels = extra.pop(LABELS_KEY, None)
        self.item_labels_ = None if labels is None else np.asarray(["", *labels], dtype=object)
        if self.item_labels_ is not None and self.item_labels_.shape != (self.items_.size,):
            raise ValueError(f"{len(labels)} item labels for {self.items_.n_ids} items")
        self._set_state(state, extra)

    def item_label(self, item: Any) -> str | None:
        """The display label (title, description) of raw ``item``; None when the model has none for it."""
        self._check_fitted()
        row = int(self.items_.encode([item])[0])
        return label_of(getattr(self, "item_labels_", None), row)


class EmbeddingModel(Recommender):
    """A model that scores by ``query_vector · candidate_vector``: retrieval goes through an index."""

    @abstractmethod
    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        """(B, d) user embeddings: trained rows for known users, folded in from ``histories`` for row 0."""

    @abstractmethod
    def _item_vectors(self) -> np.ndarray:
        """(items.size, d) item embeddings; row 0 is padding."""

    # retrieval vectors may differ from the embeddings (e.g. a bias column appended)
    def _query_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self._user_vectors(user_rows, histories)

    def _candidate_vectors(self) -> np.ndarray:
        return self._item_vectors()

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self._query_vectors(user_rows, histories) @ self._candidate_vectors().T

    def index_for(self, measure: str = "dot", *, candidates: bool = True):
        """The retrieval index over items (built once per measure; ``use_index`` replaces it)."""
        cache = self.__dict__.setdefault("_indexes", {})
        key = (measure, candidates)
        if key not in cache:
            vecs = self._candidate_vectors() if candidates else self._item_vectors()
            rows = np.arange(1, self.items_.size)
            cache[key] = build_index(vecs[1:], rows, measure=measure, config=self.__dict__.get("_index_config"))
        return cache[key]

    def set_index(self, backend: str = "auto", **options: Any) -> EmbeddingModel:
        """Choose the retrieval index: "exact", FAISS "hnsw" or "ivf", or "auto" (exact up to
        ``embrec.index.ANN_THRESHOLD`` items, FAISS above; ``threshold=`` overrides). ``options`` go to
        the index (e.g. ``ef_search=256``). Built indexes are dropped; the choice is saved with the model."""
        self._index_config = check_index_config(backend, options)
        self.__dict__.pop("_indexes", None)
        return self

    def use_index(self, index: Any, *, measure: str = "dot", candidates: bool = True) -> None:
        """Serve retrieval from ``index`` (e.g. a FAISS index built on the same vectors)."""
        self.__dict__.setdefault("_indexes", {})[(measure, candidates)] = index

    def top_k(self, user_rows: np.ndarray, histories: Ragged, k: int, *, exclude: Ragged | None = None,
              allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = self._query_vectors(user_rows, histories)
        index = self.index_for("dot")
        rows, scores = (index.search(q, k, exclude=exclude) if allow is None
                        else index.search(q, k, exclude=exclude, allow=allow))
        return np.maximum(rows, 0), scores

    def similar_items(self, items: Sequence[Any], k: int = 10, *, measure: str = "cosine",
                      candidates: Sequence[Any] | None = None,
                      exclude_items: Sequence[Any] | None = None) -> Recommendations:
        """The ``k`` nearest items to each raw item id (itself excluded), by cosine or dot;
        ``candidates`` (raw ids) is an allow-list and ``exclude_items`` a deny-list, as in ``recommend``."""
        self._check_fitted()
        check_choice("measure", measure, ("cosine", "dot"))
        if type(items) is not list and (isinstance(items, (str, bytes)) or np.ndim(items) == 0):
            raise InvalidParameterError(f"items must be a list of raw item ids; received {items!r}.")
        k = self._check_k(k)
        k = min(k, self.items_.n_ids - 1) or 1
        rows = self.items_.encode(list(items), unknown="error")
        allow, deny = self.restriction(candidates, exclude_items)
        vecs = self._item_vectors()
        exclude = with_denied(Ragged.from_lists([[r] for r in rows]), deny, len(rows))
        index = self.index_for(measure, candidates=False)
        found, scores = (index.search(vecs[rows], k, exclude=exclude) if allow is None
                         else index.search(vecs[rows], k, exclude=exclude, allow=allow))
        found = np.maximum(found, 0)
        return Recommendations(self.items_.decode(found), scores, found)

    def similar_users(self, users: Sequence[Any], k: int = 10, *, measure: str = "cosine") -> Recommendations:
        """The ``k`` known users nearest to each known raw user id (itself excluded) by cosine or dot
        between user embeddings (the trained rows, or each user's training history folded in for
        models without a user table). ``ids`` of the result are raw user ids. The user index is built
        once and dropped with the item indexes (refit, ``set_index``)."""
        self._check_fitted()
        check_choice("measure", measure, ("cosine", "dot"))
        if isinstance(users, (str, bytes)) or np.ndim(users) == 0:
            raise InvalidParameterError(f"users must be a list of raw user ids; received {users!r:.60}.")
        n_users = self.users_.n_ids
        if n_users < 2:
            raise InvalidParameterError(f"similar users need at least 2 known users; this model has {n_users}.")
        k = min(check_positive_int("k", k), n_users - 1)  # more than there are: all of them, ranked
        rows = self.users_.encode(list(users), unknown="error")
        index = self._user_index(measure)
        query = np.asarray(self._user_vectors(rows, self.seen_.select(rows)), dtype=np.float32)
        found, scores = index.search(query, k, exclude=Ragged.from_lists([[r] for r in rows]))
        found = np.maximum(found, 0)
        return Recommendations(self.users_.decode(found), scores, found)

    def _user_index(self, measure: str):
        """The index over every known user's vector for ``measure``, built once (tied to the item
        indexes' cache, so whatever drops those drops this too)."""
        owner = self.__dict__.setdefault("_indexes", {})
        held = self.__dict__.get("_user_indexes")
        if held is None or held[0] is not owner:
            held = self.__dict__["_user_indexes"] = (owner, {})
        if measure not in held[1]:
            rows = np.arange(1, self.users_.size, dtype=np.int64)
            parts = [np.asarray(self._user_vectors(rows[s : s + 4096], self.seen_.select(rows[s : s + 4096])),
                                dtype=np.float32) for s in range(0, rows.size, 4096)]
            held[1][measure] = build_index(np.concatenate(parts), rows, measure=measure,
                                           config=self.__dict__.get("_index_config"))
        return held[1][measure]

    def user_embedding(self, user: Any = None, *, history: Sequence[Any] | None = None) -> np.ndarray:
        """(d,) embedding of a known user (raw id) or of anyone from a history of raw item ids."""
        if (user is None) == (history is None):
            raise InvalidParameterError("give exactly one of user= or history=.")
        rows, hist = self.queries([user] if user is not None else None,
                                  [history] if history is not None else None)
        return np.asarray(self._user_vectors(rows, hist))[0]

    def user_embeddings(self, users: Sequence[Any] | None = None, *,
                        histories: Sequence[Sequence[Any]] | None = None) -> np.ndarray:
        """(B, d) embeddings of known users or of histories."""
        rows, hist = self.queries(users, histories)
        return np.asarray(self._user_vectors(rows, hist))

    def item_embeddings(self, items: Sequence[Any] | None = None) -> np.ndarray:
        """(len(items), d) embeddings of the raw item ids ``items``, in that order; without ``items``,
        (n_items, d) of every item in the order of ``items_.raw_ids``: row i is raw id
        ``items_.raw_ids[i]`` (the internal padding row 0 is dropped, so ``items_.decode(np.arange(n))``
        is NOT the matching id list -- use ``item_embeddings_frame()`` or ``items_.raw_ids``)."""
        self._check_fitted()
        vecs = np.asarray(self._item_vectors())
        if items is None:
            return vecs[1:]
        if isinstance(items, (str, bytes)) or np.ndim(items) == 0:
            raise InvalidParameterError(f"items must be a list of raw item ids; received {items!r:.60}.")
        return vecs[self.items_.encode(list(items), unknown="error")]

    def item_embeddings_frame(self) -> pd.DataFrame:
        """Every item's embedding as a DataFrame indexed by raw item id (index "item"), columns 0..d-1:
        ``frame.loc[X]`` is item X's vector, whatever the internal row order."""
        self._check_fitted()
        return pd.DataFrame(self.item_embeddings(), index=pd.Index(self.items_.raw_ids, name="item"))

    def user_embeddings_frame(self) -> pd.DataFrame:
        """Every known user's embedding (from their training history) indexed by raw user id (index "user")."""
        self._check_fitted()
        rows = np.arange(1, self.users_.size, dtype=np.int64)
        parts = [np.asarray(self._user_vectors(rows[s : s + 4096], self.seen_.select(rows[s : s + 4096])))
                 for s in range(0, rows.size, 4096)]  # in blocks: bounded memory on large user bases
        dim = self.item_embeddings(items=[self.items_.raw_ids[0]]).shape[1]
        vecs = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        return pd.DataFrame(vecs, index=pd.Index(self.users_.raw_ids, name="user"))


NEEDS = ("ratings", "item_features", "timestamps", "groups")


def unmet_need(model_cls: type, data: Interactions) -> str | None:
    """Why ``model_cls`` cannot be fitted on ``data`` by its declared ``needs`` (None: it can)."""
    for need in getattr(model_cls, "needs", ()):
        if need == "ratings" and data.rating is None:
            return "needs ratings (the data has no rating column)"
        if need == "ratings" and data.rating_kind == "quantity":
            return "needs ratings (the rating column holds quantities, not ratings)"
        if need == "item_features" and data.item_features is None:
            return "needs item features (the data has none; give them with --item-features)"
        if need == "timestamps" and data.timestamp is None:
            return "needs timestamps (the data has no time column)"
        if need == "groups" and data.group is None:
            return "needs transactions (the data has no group column)"
    return None


def refuse_quantities(model: Any, data: Interactions) -> None:
    """DataError when ``model`` (a class or an instance) learns from ratings and ``data``'s rating column
    holds quantities: what ``benchmark`` skips (``unmet_need``), refused where one model is fitted on a log
    a user chose (``api.train``, ``api.evaluate``, ``api.tune``), so ``--rating-kind`` decides there too."""
    cls = model if isinstance(model, type) else type(model)
    if "ratings" in getattr(cls, "needs", ()) and data.rating is not None and data.rating_kind == "quantity":
        raise DataError(f"{cls.__name__} learns from ratings, but the rating column of the data holds quantities "
                        "(rating_kind='quantity'); if it holds ratings, read it with rating_kind='rating' "
                        "(--rating-kind rating).")


LABELS_KEY = "_base.item_labels"


def label_of(labels: np.ndarray | None, row: int) -> str | None:
    """labels[row], or None for no labels, row 0, an empty label or a row past them (an added item)."""
    if labels is None or row <= 0 or row >= len(labels):
        return None
    return str(labels[row]) or None


def with_denied(exclude: Ragged | None, deny: np.ndarray | None, n_rows: int) -> Ragged | None:
    """``exclude`` (per-query rows, or None) with the rows of ``deny`` added to every query."""
    if deny is None:
        return exclude
    deny = np.asarray(deny, dtype=np.int64)
    if exclude is None:
        return Ragged.from_lengths(np.tile(deny, n_rows), np.full(n_rows, deny.size, dtype=np.int64))
    rows = np.concatenate([exclude.row_ids, np.repeat(np.arange(n_rows, dtype=np.int64), deny.size)])
    order = np.argsort(rows, kind="stable")
    values = np.concatenate([exclude.values, np.tile(deny, n_rows)])[order]
    return Ragged.from_lengths(values, exclude.lengths + deny.size)


def _is_id_list(h: Any) -> bool:
    """Whether ``h`` is one flat sequence of ids (a list of ints or strings is, without numpy's look)."""
    if type(h) is list and all(type(x) is str or type(x) is int for x in h):
        return True
    return not isinstance(h, (str, bytes)) and np.ndim(h) == 1


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x
