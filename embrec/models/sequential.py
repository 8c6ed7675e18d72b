"""What every next-item sequence model shares: training sequences, training, scoring, streaming sessions.

A subclass (``RNNRecommender``, ``SASRec``) builds its module and turns token sequences into hidden
states; this base class does the rest:

- training sequences (``sequences=``): ``"transaction"`` — every transaction (``Interactions.group``)
  is one sequence ``[0, i1, i2, ...]``, 0 being "nothing bought yet"; without a group column each user's
  timeline is one sequence. ``"timeline"`` — each user's transactions in time order, concatenated
  (``[0, a1, a2, 0, b1, ...]``); at prediction time the last ``max_len`` tokens of the user's training
  timeline come before the current transaction. Rows of unknown users (user row 0, e.g. retail rows
  without a customer) give one sequence per transaction and train the unknown-user embedding row.
  Without a group column nothing splits a timeline: events with equal timestamps (a ratings log often
  has many) stay in log order inside it.
- training length: sequences are cut into windows of at most ``max_len`` steps; a mini-batch holds at
  most ``batch_size`` windows and, with ``batch_tokens``, at most that many steps, so an epoch makes about
  (events / batch_tokens) optimizer steps whether the log is short baskets or a few long timelines (a log
  of 600 users with 165 events each otherwise gives ~18 steps an epoch). ``epochs`` is then a cap:
  with ``patience``, training stops after that many epochs without a better validation figure and keeps
  the best epoch's weights, the figure being ``valid``'s when ``fit`` gets one, or else hit@10 on the last
  event of up to ``valid_users`` users carved from train (``carve_valid``: users whose last item is new to
  them), scored as ``leave-last-out`` scores; the carved events are left out of training.
- ``next_item_scores(user_rows, prefixes)`` (the ``retail-next`` protocol): scores of the next item of a
  transaction given the items bought before in it (items unknown to training, row 0, are skipped).
- ``_scores(user_rows, histories)`` (``recommend(histories=...)``, ``top_k``): a history is read as one
  sequence ``[0, h1, h2, ...]`` and the next item is scored.
- ``session(user)``: streaming inference, one purchase at a time (see ``SequenceSession``).
- ``transition_prior`` / ``prior_smoothing`` / ``mask_bought`` (see ``embrec.models.transition_prior``):
  logits = network logits + a learned weight x log P(next | last token) ("scalar", "item"), or the log of a
  gated mixture of P(next | last token) and the network's softmax ("mixture"), from first-order counts of
  the training sequences; and the transaction's bought items left out of the training softmax. Every score
  (``next_item_scores``, ``_scores``, a session's) goes through ``_full_logits(hidden, last token)``.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import InvalidParameterError, check_choice, check_float, check_positive_int
from embrec.models.base import Recommendations, Recommender, top_k_rows
from embrec.models.distributed import local_interactions
from embrec.models.history_batches import carve_valid
from embrec.models.training import Batches, TrainConfig, resolve_device, seeded, train_loop
from embrec.models.transition_prior import PRIORS, TransitionPrior, bought_mask, transition_counts
from embrec.nn.sequence import (
    SequenceBatch,
    length_batches,
    make_batch,
    next_item_loss,
    next_item_windows,
)

logger = logging.getLogger(__name__)

SEQUENCES = ("transaction", "timeline")
#: the training length both sequence models default to, chosen on validation parts only (docs/benchmarks.md,
#: "rnn and sasrec: a training length that adapts to the log"): mini-batches of at most BATCH_TOKENS steps,
#: up to MAX_EPOCHS passes, early stopping after PATIENCE epochs without a better hit@10 on ``valid`` or, when
#: fit gets none, on the last event of up to VALID_USERS users carved from train
BATCH_TOKENS, MAX_EPOCHS, PATIENCE, VALID_USERS = 1024, 20, 2, 500


class SequenceRecommender(Recommender):
    """Base of the next-item models; subclasses set the hyper-parameters named in ``_check_common``."""

    # options a subclass may take in its constructor (these class defaults apply otherwise)
    transition_prior: str = "none"
    prior_smoothing: float = 1.0
    mask_bought: bool = False

    # subclass interface -------------------------------------------------------------------------
    @abstractmethod
    def _build_module(self) -> nn.Module:
        """The torch module for vocabularies ``users_`` / ``items_`` (not yet on the device)."""

    @abstractmethod
    def _batch_hidden(self, batch: SequenceBatch) -> torch.Tensor:
        """(B, T, H) hidden states of a training batch (module in train mode)."""

    @abstractmethod
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(M, H) hidden states -> (M, items.size) next-item logits."""

    @abstractmethod
    def _last_hidden(self, user_rows: np.ndarray, tokens: Ragged) -> torch.Tensor:
        """(B, H) hidden state after the last token of each (non-empty) token row."""

    @abstractmethod
    def _start_state(self, user_row: int, tokens: np.ndarray) -> Any:
        """Streaming state after ``tokens`` (the session's opening tokens)."""

    @abstractmethod
    def _advance(self, state: Any, item_row: int) -> Any:
        """Streaming state after one more item."""

    @abstractmethod
    def _state_hidden(self, state: Any) -> torch.Tensor:
        """(1, H) hidden state of a streaming state."""

    # hyper-parameters --------------------------------------------------------------------------
    def _check_common(self) -> None:
        check_choice("sequences", self.sequences, SEQUENCES)
        check_positive_int("max_len", self.max_len, minimum=2)
        check_float("dropout", self.dropout, low=0.0, high=0.9)
        check_float("user_dropout", self.user_dropout, low=0.0, high=1.0)
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        if self.batch_tokens is not None:
            check_positive_int("batch_tokens", self.batch_tokens)
        check_positive_int("valid_users", self.valid_users, minimum=0)
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_float("weight_decay", self.weight_decay, low=0.0)
        if self.clip_grad is not None:
            check_float("clip_grad", self.clip_grad, low=0.0, low_open=True)
        if self.patience is not None:
            check_positive_int("patience", self.patience)
        check_positive_int("seed", self.seed, minimum=0)
        check_choice("transition_prior", self.transition_prior, PRIORS)
        check_float("prior_smoothing", self.prior_smoothing, low=0.0, low_open=True)
        if not isinstance(self.mask_bought, (bool, np.bool_)):
            raise InvalidParameterError(
                f"mask_bought must be True or False; received {self.mask_bought!r}."
            )

    # training ----------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.device_ = resolve_device(self.device)
        self.context_ = (
            user_contexts(train, self.max_len)
            if self.sequences == "timeline"
            else Ragged(np.zeros(0, np.int64), np.zeros(train.users.size + 1, np.int64))
        )
        # no valid: early stopping on the last event of up to valid_users users of train
        carved = None
        if valid is None and self.patience is not None:
            train, carved = carve_valid(train, max_users=self.valid_users, seed=self.seed)
        tokens, users = training_sequences(local_interactions(train), self.sequences)
        windows = next_item_windows(tokens, users, max_len=self.max_len)
        logger.info(
            "%s: %d training windows, %d targets",
            type(self).__name__,
            len(windows),
            int((windows.targets.values > 0).sum()),
        )
        config = TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            optimizer="adam",
            weight_decay=self.weight_decay,
            clip_grad=self.clip_grad,
            patience=self.patience,
            progress=self.progress,
        )
        lengths = windows.inputs.lengths

        def batches(rng: np.random.Generator, epoch: int) -> Batches:
            chunks = length_batches(lengths, self.batch_size, rng, max_tokens=self.batch_tokens)
            return Batches(
                (make_batch(windows, rows).to(self.device_) for rows in chunks), len(chunks)
            )

        def loss(batch: SequenceBatch) -> torch.Tensor:
            # teach the unknown-user row 0 what an average user looks like
            if self.user_dropout > 0:
                drop = torch.rand(batch.users.shape, device=batch.users.device) < self.user_dropout
                batch = SequenceBatch(batch.items, batch.targets, torch.where(drop, 0, batch.users))
            return self._batch_loss(batch)

        validate = None
        if carved is not None:
            validate = self._carved_validator(carved, train.user_histories())
        elif valid is not None and self.patience is not None:
            validate = self._validator(valid)
        self.prior_counts_ = transition_counts(tokens, self.items_.size)
        with seeded(self.seed) as rng:
            self.module_ = self._with_prior(self._build_module()).to(self.device_)
            self.history_ = train_loop(
                self.module_,
                batches=batches,
                loss=loss,
                config=config,
                rng=rng,
                validate=validate,
                desc=type(self).__name__,
            )
        self.module_.eval()

    def _batch_loss(self, batch: SequenceBatch) -> torch.Tensor:
        """Mean softmax cross-entropy over all items at the positions with a real target only (with
        ``mask_bought``: over the items not yet bought in the transaction, at positions whose target is
        not one of them); the transition prior is the leave-one-out one."""
        hidden = self._batch_hidden(batch)  # (B, T, H)
        if self.transition_prior == "none" and not self.mask_bought:
            return next_item_loss(hidden, batch.targets, self._logits)
        mask = batch.targets > 0  # (B, T)
        targets = batch.targets[mask]  # (M,)
        logits = self._full_logits(hidden[mask], batch.items[mask], leave_out=targets)  # (M, N)
        if self.mask_bought:
            bought = bought_mask(batch.items, mask, self.items_.size)  # (M, N)
            fresh = ~bought.gather(1, targets[:, None])[:, 0]  # (M,) target not bought yet
            logits = logits.masked_fill(bought, float("-inf"))[fresh]
            targets = targets[fresh]
            if targets.numel() == 0:
                return hidden.sum() * 0.0
        return F.cross_entropy(logits, targets)

    # transition prior --------------------------------------------------------------------------
    def _with_prior(self, module: nn.Module) -> nn.Module:
        """Give ``module`` its learned prior weight (module.prior_weight, 1 or items.size values, all 1)
        and set up the dense log-prior of ``prior_counts_`` on the device ("mixture": gate logits, all 0)."""
        self.prior_ = None
        if self.transition_prior != "none":
            size = 1 if self.transition_prior == "scalar" else self.items_.size
            start = torch.zeros(size) if self.transition_prior == "mixture" else torch.ones(size)
            module.register_parameter("prior_weight", nn.Parameter(start))
            self.prior_ = TransitionPrior(
                self.prior_counts_, self.item_counts_, self.prior_smoothing, self.device_
            )
        return module

    def _full_logits(
        self, hidden: torch.Tensor, last: torch.Tensor, leave_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(M, H) hidden states and (M,) last tokens -> (M, N) logits, the weighted log-prior added
        ("mixture": log of the gated mixture of the transition and the network's softmax)."""
        logits = self._logits(hidden)  # (M, N)
        if self.prior_ is None:
            return logits
        weight = self.module_.prior_weight
        weight = (
            weight.expand(last.shape[0]) if self.transition_prior == "scalar" else weight[last]
        )  # (M,)
        log_prior = self.prior_.rows(last, leave_out)  # (M, N)
        if self.transition_prior == "mixture":
            gate = (
                F.logsigmoid(weight)[:, None],
                F.logsigmoid(-weight)[:, None],
            )  # log g, log (1 - g)
            return torch.logaddexp(gate[0] + log_prior, gate[1] + torch.log_softmax(logits, dim=1))
        return logits + weight[:, None] * log_prior

    def _validator(self, valid: Interactions):
        """Top-5 next-item accuracy on ``valid``'s transactions (or, without groups, hit@10 of each
        user's first validation event after their training history)."""
        valid = (
            valid.reencode(self.users_, self.items_) if valid.items is not self.items_ else valid
        )
        if valid.group is not None:
            offsets = valid.group_offsets()
            group = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
            lengths = (
                np.arange(len(valid)) - offsets[group]
            )  # items before each row in its transaction
            starts = np.repeat(offsets[group], lengths)
            within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            prefixes = Ragged.from_lengths(valid.item[starts + within], lengths)

            def metric() -> float:
                hits = 0
                for s in range(0, len(valid), 4096):
                    rows = np.arange(s, min(s + 4096, len(valid)))
                    pre = prefixes.select(rows)
                    sc = self.next_item_scores(valid.user[rows], pre)  # (B, N)
                    sc[:, 0] = -np.inf
                    sc[pre.row_ids, pre.values] = -np.inf
                    top, _ = top_k_rows(sc, 5)
                    hits += int((top == valid.item[rows, None]).any(axis=1).sum())
                return hits / len(valid)

            return metric
        order = (
            np.argsort(valid.timestamp, kind="stable")
            if valid.timestamp is not None
            else np.arange(len(valid))
        )
        users, first = np.unique(valid.user[order], return_index=True)
        keep = users > 0
        users, targets = users[keep], valid.item[order][first][keep]

        def metric() -> float:
            hist = self.seen_.select(users)
            top, _ = self.top_k(users, hist, min(10, self.items_.n_ids), exclude=hist)
            return float((top == targets[:, None]).any(axis=1).mean()) if users.size else 0.0

        return metric

    def _carved_validator(self, carved: Interactions, history: Ragged):
        """hit@10 of the carved slice (each user's held-out last event) from the user's remaining training
        history, that history excluded: what ``leave-last-out`` scores."""
        users, targets = carved.user, carved.item

        def metric() -> float:
            hist = history.select(users)
            top, _ = self.top_k(users, hist, min(10, self.items_.n_ids), exclude=hist)
            return float((top == targets[:, None]).any(axis=1).mean())

        return metric

    # scoring -----------------------------------------------------------------------------------
    def next_item_scores(self, user_rows: np.ndarray, prefixes: Ragged) -> np.ndarray:
        """(B, items.size) scores of the next item of a transaction from its earlier items (and the user)."""
        self._check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64)
        keep = prefixes.values > 0  # items unknown to training carry no signal: skipped
        prefixes = Ragged.from_lengths(
            prefixes.values[keep], np.bincount(prefixes.row_ids[keep], minlength=len(prefixes))
        )
        context = self.context_.select(user_rows)
        opened = Ragged.from_lengths(
            np.zeros(len(prefixes), np.int64), np.ones(len(prefixes), np.int64)
        )
        return self._score_tokens(user_rows, concat_rows(context, opened, prefixes))

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        opened = Ragged.from_lengths(
            np.zeros(len(histories), np.int64), np.ones(len(histories), np.int64)
        )
        return self._score_tokens(
            np.asarray(user_rows, dtype=np.int64), concat_rows(opened, histories)
        )

    def _score_tokens(self, user_rows: np.ndarray, tokens: Ragged, chunk: int = 4096) -> np.ndarray:
        out = np.empty((len(tokens), self.items_.size), dtype=np.float32)
        last = torch.as_tensor(
            tokens.values[tokens.offsets[1:] - 1], device=self.device_
        )  # (B,) rows are non-empty
        with torch.inference_mode():
            hidden = self._last_hidden(user_rows, tokens)  # (B, H)
            for s in range(0, len(tokens), chunk):
                out[s : s + chunk] = (
                    self._full_logits(hidden[s : s + chunk], last[s : s + chunk])
                    .float()
                    .cpu()
                    .numpy()
                )  # (b, N)
        return out

    # streaming ---------------------------------------------------------------------------------
    def session(self, user: Any = None) -> SequenceSession:
        """A streaming session for one transaction of ``user`` (a raw id; None or an id unknown to
        training = the unknown user): ``add(item)`` after each purchase, ``top_k(k)`` at any time."""
        self._check_fitted()
        row = 0
        if user is not None:
            row = int(self.users_.encode([user], unknown="zero")[0])
        return SequenceSession(self, row)

    # persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {
            f"module.{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()
        }
        state["context.values"] = self.context_.values
        state["context.offsets"] = self.context_.offsets
        if self.transition_prior != "none":
            c = self.prior_counts_
            state.update(
                {"prior.data": c.data, "prior.indices": c.indices, "prior.indptr": c.indptr}
            )
        return state

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.device_ = resolve_device(self.device)
        if self.transition_prior != "none":
            n = self.items_.size
            self.prior_counts_ = sp.csr_matrix(
                (state["prior.data"], state["prior.indices"], state["prior.indptr"]), shape=(n, n)
            )
        self.module_ = self._with_prior(self._build_module())
        weights = {
            k[len("module.") :]: torch.from_numpy(np.array(v))
            for k, v in state.items()
            if k.startswith("module.")
        }
        self.module_.load_state_dict(weights, strict=True)
        self.module_.to(self.device_).eval()
        self.context_ = Ragged(state["context.values"], state["context.offsets"])


class SequenceSession:
    """Streaming next-item recommendations inside one transaction.

    s = model.session(user="17850")
    s.top_k(5)            # before the first purchase
    s.add("85123A")       # one step of the model (an RNN carries its state; nothing is re-run)
    s.top_k(5)            # the transaction's bought items are left out (exclude_bought=True)
    """

    def __init__(self, model: SequenceRecommender, user_row: int) -> None:
        self.model = model
        self.user_row = user_row
        self.bought: list[int] = []
        opening = np.concatenate([model.context_[user_row], [0]]).astype(np.int64)
        self._last = 0  # the last token so far (the transition prior reads it)
        with torch.inference_mode():
            self._state = model._start_state(user_row, opening)
        self._cache: np.ndarray | None = None

    def add(self, item: Any) -> SequenceSession:
        """Record a purchase (a raw item id known to the model) and advance the model one step."""
        if isinstance(item, (list, tuple, np.ndarray)):
            raise InvalidParameterError(f"add takes one raw item id; received {item!r:.60}.")
        row = int(self.model.items_.encode([item], unknown="error")[0])
        with torch.inference_mode():
            self._state = self.model._advance(self._state, row)
        self.bought.append(row)
        self._last = row
        self._cache = None
        return self

    def scores(self) -> np.ndarray:
        """(items.size,) next-item scores on dense rows (row 0 is padding)."""
        if self._cache is None:
            with torch.inference_mode():
                hidden = self.model._state_hidden(self._state)  # (1, H)
                last = torch.full(
                    (1,), self._last, dtype=torch.int64, device=self.model.device_
                )  # (1,)
                self._cache = self.model._full_logits(hidden, last)[0].float().cpu().numpy()  # (N,)
        return self._cache

    def top_k(self, k: int = 5, *, exclude_bought: bool = True) -> Recommendations:
        """The ``k`` best next items as raw ids (one row), the transaction's items removed on request."""
        k = self.model._check_k(k)
        sc = self.scores().copy()
        sc[0] = -np.inf
        if exclude_bought and self.bought:
            sc[self.bought] = -np.inf
        rows, vals = top_k_rows(sc[None], k)
        rows[~np.isfinite(vals)] = 0
        return Recommendations(self.model.items_.decode(rows), vals, rows)


# sequences from a log ------------------------------------------------------------------------------
def transaction_tokens(log: Interactions) -> tuple[Ragged, np.ndarray, np.ndarray]:
    """One token row ``[0, items...]`` per transaction (per user timeline without a group column),
    with its user row and the time of its first event (or its position)."""
    if log.group is not None:
        offsets = log.group_offsets()
        items = Ragged(log.item, offsets)
        users = log.user[offsets[:-1]]
        when = log.timestamp[offsets[:-1]] if log.timestamp is not None else offsets[:-1]
    else:
        logger.info("no group column: each user's timeline is one sequence")
        known = log.subset(log.user > 0)
        items = known.user_histories()
        users = np.arange(len(items))
        when = np.zeros(len(items), dtype=np.int64)
        nonempty = items.lengths > 0
        items, users, when = items.select(np.flatnonzero(nonempty)), users[nonempty], when[nonempty]
    opened = Ragged.from_lengths(np.zeros(len(items), np.int64), np.ones(len(items), np.int64))
    return concat_rows(opened, items), users, np.asarray(when)


def training_sequences(log: Interactions, mode: str) -> tuple[Ragged, np.ndarray]:
    """Token sequences and their users: transactions, or (mode "timeline") each known user's
    transactions in time order concatenated; unknown-user transactions stay one sequence each."""
    tokens, users, when = transaction_tokens(log)
    if mode == "transaction" or log.group is None:
        return tokens, users
    order = np.lexsort((np.arange(len(users)), when, users))  # by user, then time, then log order
    tokens, users = tokens.select(order), users[order]
    # each known user's rows merge into one; every unknown-user row (user 0) stays its own
    new_row = np.ones(len(users), dtype=bool)
    new_row[1:] = (users[1:] != users[:-1]) | (users[1:] == 0)
    starts = np.flatnonzero(new_row)
    offsets = np.append(tokens.offsets[starts], tokens.offsets[-1])
    return Ragged(tokens.values, offsets), users[starts]


def user_contexts(log: Interactions, max_len: int) -> Ragged:
    """Per user row (row 0 empty): the last ``max_len`` tokens of the user's training timeline."""
    tokens, users = training_sequences(log, "timeline")
    known = users > 0
    by_user = Ragged.group(
        np.repeat(users[known], tokens.lengths[known]),
        tokens.select(np.flatnonzero(known)).values,
        log.users.size,
    )
    return by_user.tail(max_len)


def concat_rows(*parts: Ragged) -> Ragged:
    """Row-wise concatenation of ragged arrays with the same number of rows."""
    lengths = sum(p.lengths for p in parts)
    row = np.concatenate([p.row_ids for p in parts])
    part = np.concatenate([np.full(p.values.size, i) for i, p in enumerate(parts)])
    order = np.lexsort((part, row))  # stable inside a part
    values = np.concatenate([p.values for p in parts])[order]
    return Ragged.from_lengths(values, lengths)
