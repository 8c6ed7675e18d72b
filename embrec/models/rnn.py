"""Recurrent next-item model (the retail chapter's RNN section, done properly).

    model = RNNRecommender(cell="lstm", use_user=True).fit(train)           # the chapter's best model
    model.next_item_scores(user_rows, prefixes)                             # retail-next protocol
    s = model.session(user="17850"); s.add("85123A"); s.top_k(5)            # streaming, state carried

Item embeddings (row 0 = "nothing bought yet") [+ a user embedding concatenated to every step's input,
row 0 = a user unknown to training] -> dropout -> GRU / LSTM layers -> dropout -> a dense layer to
logits over all items; softmax cross-entropy on real positions only (see ``embrec.nn.sequence``),
Adam with gradient-norm clipping. ``user_dropout`` replaces a training sequence's user by the unknown
row with that probability, so row 0 learns an average user even where every training user is known.

``transition_prior="scalar"`` / ``"item"`` adds a learned weight (one, or one per last item) times the
log of the smoothed first-order transition probability P(next | last token) to the logits, trained end to
end so the network learns the residual over the transitions; ``mask_bought=True`` leaves the items already
bought in the transaction out of the training softmax, as the ``retail-next`` protocol does when it ranks
(``embrec.models.transition_prior``); ``"mixture"`` mixes the transition probability and the network's
softmax with a learned gate per last item instead. Both default to off (and models saved without them load unchanged).

Training length adapts to the log (``embrec.models.sequential``): mini-batches of at most
``batch_tokens`` steps, and up to ``epochs`` passes with early stopping after ``patience`` epochs without
a better figure on ``valid`` or, when ``fit`` gets none, on the last event of up to ``valid_users`` users
carved from train (docs/benchmarks.md, "Defaults chosen on validation parts": a log of a few hundred
users with long timelines got ~20 optimizer steps an epoch and stayed below popularity).

Scoring many prefixes of the same transactions (the protocol asks before every row) runs each
distinct sequence once: a prefix that is the start of a longer one in the same call reads its hidden
state from the longer one's run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from embrec.data.ragged import Ragged
from embrec.errors import check_choice, check_positive_int
from embrec.models.search import Choice, FloatRange, IntRange, Param
from embrec.models.sequential import (
    BATCH_TOKENS,
    MAX_EPOCHS,
    PATIENCE,
    VALID_USERS,
    SequenceRecommender,
)
from embrec.nn.sequence import RecurrentEncoder, SequenceBatch

CELLS = ("gru", "lstm")


class _RNNNet(nn.Module):
    def __init__(self, encoder: RecurrentEncoder, hidden_dim: int, n_items: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_dim, n_items)  # dense layer to all-item logits


class RNNRecommender(SequenceRecommender):
    """GRU/LSTM next-item recommender, optionally with a user embedding (``use_user``)."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "cell": Choice(("gru", "lstm")),
        "embedding_dim": IntRange(16, 128, log=True),
        "hidden_dim": IntRange(32, 256, log=True),
        "dropout": FloatRange(0.0, 0.5),
        "lr": FloatRange(3e-4, 1e-2, log=True),
        "epochs": IntRange(3, 20),
        "max_len": IntRange(10, 100, log=True),
    }

    def __init__(
        self,
        *,
        cell: str = "gru",
        use_user: bool = False,
        sequences: str = "transaction",
        max_len: int = 50,
        embedding_dim: int = 64,
        user_dim: int = 32,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.2,
        user_dropout: float = 0.1,
        epochs: int = MAX_EPOCHS,
        batch_size: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        clip_grad: float | None = 5.0,
        patience: int | None = PATIENCE,
        batch_tokens: int | None = BATCH_TOKENS,
        valid_users: int = VALID_USERS,
        device: str | None = None,
        seed: int = 0,
        progress: bool | None = None,
        transition_prior: str = "none",
        prior_smoothing: float = 1.0,
        mask_bought: bool = False,
    ) -> None:
        self.cell = cell
        self.use_user = use_user
        self.sequences = sequences
        self.max_len = max_len
        self.embedding_dim = embedding_dim
        self.user_dim = user_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.user_dropout = user_dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_grad = clip_grad
        self.patience = patience
        self.batch_tokens = batch_tokens
        self.valid_users = valid_users
        self.device = device
        self.seed = seed
        self.progress = progress
        self.transition_prior = transition_prior
        self.prior_smoothing = prior_smoothing
        self.mask_bought = mask_bought
        check_choice("cell", cell, CELLS)
        for name in ("embedding_dim", "user_dim", "hidden_dim", "num_layers"):
            check_positive_int(name, getattr(self, name))
        self._check_common()

    # module --------------------------------------------------------------------------------------
    def _build_module(self) -> _RNNNet:
        encoder = RecurrentEncoder(
            self.items_.size,
            self.users_.size,
            cell=self.cell,
            embedding_dim=self.embedding_dim,
            user_dim=self.user_dim if self.use_user else 0,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            dropout=self.dropout,
        )
        return _RNNNet(encoder, self.hidden_dim, self.items_.size)

    def _users(self, rows: Any) -> torch.Tensor | None:
        if not self.use_user:
            return None
        return torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device_)

    def _batch_hidden(self, batch: SequenceBatch) -> torch.Tensor:
        out, _ = self.module_.encoder(
            batch.items, batch.users if self.use_user else None
        )  # (B, T, H)
        return out

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.module_.head(hidden)  # (M, N)

    # scoring -------------------------------------------------------------------------------------
    def _last_hidden(
        self, user_rows: np.ndarray, tokens: Ragged, max_tokens: int = 1 << 18
    ) -> torch.Tensor:
        leaves, leaf_of = prefix_chains(user_rows, tokens)
        pos_of = tokens.lengths - 1  # (B,) the query's last token inside its leaf's run
        hidden = torch.empty((len(tokens), self.hidden_dim), device=self.device_)
        leaves = leaves[np.argsort(tokens.lengths[leaves], kind="stable")]
        slot = np.empty(len(tokens), dtype=np.int64)  # position of a leaf inside its batch
        s = 0
        while s < leaves.size:
            width = int(tokens.lengths[leaves[min(s + 1024, leaves.size) - 1]])
            e = min(leaves.size, s + max(1, max_tokens // width), s + 1024)
            part = leaves[s:e]
            slot[part] = np.arange(part.size)
            items = torch.as_tensor(
                tokens.select(part).to_padded(pad=0), device=self.device_
            )  # (b, T)
            out, _ = self.module_.encoder(items, self._users(user_rows[part]))  # (b, T, H)
            ask = np.flatnonzero(np.isin(leaf_of, part))  # queries answered by this run
            hidden[torch.as_tensor(ask, device=self.device_)] = out[
                torch.as_tensor(slot[leaf_of[ask]], device=self.device_),
                torch.as_tensor(pos_of[ask], device=self.device_),
            ]  # (q, H)
            s = e
        return hidden

    # streaming -----------------------------------------------------------------------------------
    def _start_state(self, user_row: int, tokens: np.ndarray) -> Any:
        items = torch.as_tensor(tokens[None], device=self.device_)  # (1, T)
        out, state = self.module_.encoder(items, self._users([user_row]))  # (1, T, H)
        return out[:, -1], state, self._users([user_row])

    def _advance(self, state: Any, item_row: int) -> Any:
        _, rnn_state, user = state
        items = torch.full((1, 1), item_row, dtype=torch.int64, device=self.device_)  # (1, 1)
        out, rnn_state = self.module_.encoder(items, user, rnn_state)  # (1, 1, H)
        return out[:, -1], rnn_state, user

    def _state_hidden(self, state: Any) -> torch.Tensor:
        return state[0]  # (1, H)


def prefix_chains(user_rows: np.ndarray, tokens: Ragged) -> tuple[np.ndarray, np.ndarray]:
    """Group queries whose token rows are prefixes of each other (same user).

    Returns ``leaves`` (rows to actually run) and ``leaf_of`` (B,): the leaf whose run contains each
    query's sequence as a prefix (the query's own row when nothing longer extends it)."""
    vals, offs = tokens.values, tokens.offsets
    keys: dict[tuple[int, bytes], int] = {}
    rep = np.empty(len(tokens), dtype=np.int64)  # identical queries share one representative
    for b in range(len(tokens)):
        rep[b] = keys.setdefault((int(user_rows[b]), vals[offs[b] : offs[b + 1]].tobytes()), b)
    reps = np.unique(rep)
    has_child = np.zeros(len(tokens), dtype=bool)
    for b in reps:
        if offs[b + 1] - offs[b] > 1:
            parent = keys.get((int(user_rows[b]), vals[offs[b] : offs[b + 1] - 1].tobytes()))
            if parent is not None:
                has_child[parent] = True
    leaves = reps[~has_child[reps]]
    leaf_of = np.full(len(tokens), -1, dtype=np.int64)
    for leaf in leaves:
        j: int | None = int(leaf)
        while j is not None and leaf_of[j] < 0:
            leaf_of[j] = leaf
            n = offs[j + 1] - offs[j]
            j = (
                keys.get((int(user_rows[leaf]), vals[offs[leaf] : offs[leaf] + n - 1].tobytes()))
                if n > 1
                else None
            )
    return leaves, leaf_of[rep]
