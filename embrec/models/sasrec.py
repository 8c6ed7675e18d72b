"""SASRec: self-attentive sequential recommendation (Kang & McAuley, 2018), with a full softmax.

    model = SASRec(max_len=50, dim=64, num_layers=2).fit(train)
    model.next_item_scores(user_rows, prefixes)          # retail-next protocol
    s = model.session(); s.add("85123A"); s.top_k(5)      # streaming

The last ``max_len`` tokens (item rows, 0 = "nothing bought yet") get item + learned position
embeddings [+ a user embedding, row 0 = unknown user, with ``use_user``], then causal pre-norm
transformer blocks (multi-head self-attention + feed-forward, dropout) and a final layer norm. The
output at position t scores the next item against the same item embeddings (plus a per-item bias):
softmax cross-entropy over all items, not one sampled negative as in the paper. A streaming session
keeps the token window and re-reads it after each purchase (at most ``max_len`` tokens). Training
length adapts to the log as for the RNN: mini-batches of at most ``batch_tokens`` steps, up to ``epochs``
passes, early stopping (``patience``) on ``valid`` or on ``valid_users`` users carved from train
(``embrec.models.sequential``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from embrec.data.ragged import Ragged
from embrec.errors import InvalidParameterError, check_positive_int
from embrec.models.search import Choice, FloatRange, IntRange, Param
from embrec.models.sequential import (
    BATCH_TOKENS,
    MAX_EPOCHS,
    PATIENCE,
    VALID_USERS,
    SequenceRecommender,
)
from embrec.nn.sequence import CausalSelfAttentionEncoder, SequenceBatch


class _SASRecNet(nn.Module):
    def __init__(self, encoder: CausalSelfAttentionEncoder, n_items: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.bias = nn.Parameter(torch.zeros(n_items))  # (N,) per-item prior


class SASRec(SequenceRecommender):
    """Causal self-attention over the last ``max_len`` items; full-softmax next-item loss."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "dim": Choice((32, 64, 128)),
        "num_layers": IntRange(1, 3),
        "num_heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.5),
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "epochs": IntRange(3, 30),
        "max_len": IntRange(10, 100, log=True),
    }

    def __init__(
        self,
        *,
        use_user: bool = False,
        sequences: str = "transaction",
        max_len: int = 50,
        dim: int = 64,
        num_heads: int = 2,
        num_layers: int = 2,
        dropout: float = 0.2,
        user_dropout: float = 0.1,
        epochs: int = MAX_EPOCHS,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_grad: float | None = 5.0,
        patience: int | None = PATIENCE,
        batch_tokens: int | None = BATCH_TOKENS,
        valid_users: int = VALID_USERS,
        device: str | None = None,
        seed: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.use_user = use_user
        self.sequences = sequences
        self.max_len = max_len
        self.dim = dim
        self.num_heads = num_heads
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
        for name in ("dim", "num_heads", "num_layers"):
            check_positive_int(name, getattr(self, name))
        if dim % num_heads:
            raise InvalidParameterError(
                f"dim must be a multiple of num_heads ({num_heads}); received {dim}."
            )
        self._check_common()

    # module --------------------------------------------------------------------------------------
    def _build_module(self) -> _SASRecNet:
        encoder = CausalSelfAttentionEncoder(
            self.items_.size,
            self.users_.size,
            max_len=self.max_len,
            dim=self.dim,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            dropout=self.dropout,
            use_user=self.use_user,
        )
        return _SASRecNet(encoder, self.items_.size)

    def _users(self, rows: Any) -> torch.Tensor | None:
        if not self.use_user:
            return None
        return torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device_)

    def _batch_hidden(self, batch: SequenceBatch) -> torch.Tensor:
        return self.module_.encoder(
            batch.items, batch.users if self.use_user else None
        )  # (B, T, D)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.module_.encoder.item_embedding.weight.T + self.module_.bias  # (M, N)

    # scoring -------------------------------------------------------------------------------------
    def _last_hidden(
        self, user_rows: np.ndarray, tokens: Ragged, chunk: int = 1024
    ) -> torch.Tensor:
        window = tokens.tail(self.max_len)
        last = torch.as_tensor(window.lengths - 1, device=self.device_)  # (B,)
        hidden = torch.empty((len(window), self.dim), device=self.device_)
        order = np.argsort(
            window.lengths, kind="stable"
        )  # similar lengths together: little padding
        for s in range(0, len(order), chunk):
            part = order[s : s + chunk]
            items = torch.as_tensor(
                window.select(part).to_padded(pad=0), device=self.device_
            )  # (b, T)
            out = self.module_.encoder(items, self._users(user_rows[part]))  # (b, T, D)
            idx = torch.as_tensor(part, device=self.device_)
            hidden[idx] = out[torch.arange(part.size, device=self.device_), last[idx]]  # (b, D)
        return hidden

    # streaming -----------------------------------------------------------------------------------
    def _start_state(self, user_row: int, tokens: np.ndarray) -> Any:
        return self._window_state(user_row, list(tokens[-self.max_len :]))

    def _advance(self, state: Any, item_row: int) -> Any:
        return self._window_state(state[0], (state[1] + [item_row])[-self.max_len :])

    def _window_state(self, user_row: int, window: list[int]) -> Any:
        items = torch.as_tensor([window], dtype=torch.int64, device=self.device_)  # (1, T)
        out = self.module_.encoder(items, self._users([user_row]))  # (1, T, D)
        return user_row, window, out[:, -1]

    def _state_hidden(self, state: Any) -> torch.Tensor:
        return state[2]  # (1, D)
