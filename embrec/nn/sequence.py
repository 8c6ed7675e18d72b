"""Sequence encoders and next-item training windows for the sequence models.

Token sequences use the item rows of an IdVocab, with row 0 as the "nothing bought yet" marker that
opens every transaction (the retail chapter's dummy item), so a user's timeline reads::

    transactions  [a1, a2, a3]  [b1, b2]
    tokens        [0, a1, a2, a3, 0, b1, b2]
    inputs  x     [0, a1, a2, a3, 0, b1]        # what the model has seen
    targets y     [a1, a2, a3, 0, b1, b2]       # the next item; 0 (a transaction boundary) is no target

Windows of at most ``max_len`` inputs are left-aligned in a (B, T) batch and padded at the right with
target 0: a causal encoder never lets a position see a later one, so padding cannot change the
outputs of real positions, and ``next_item_loss`` reads logits only where the target is a real item.

``RecurrentEncoder`` (GRU or LSTM over item [+ user] embeddings, with a state that can be carried
step by step) and ``CausalSelfAttentionEncoder`` (SASRec: learned positions, causal pre-norm
transformer blocks) both map (B, T) item rows to (B, T, H) hidden states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embrec.data.ragged import Ragged
from embrec.memory import check_tables

RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


# windows and batches ---------------------------------------------------------------------------
@dataclass
class SequenceBatch:
    """``items`` (B, T) input rows, ``targets`` (B, T) next rows (0 = no target), ``users`` (B,) rows."""

    items: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    def to(self, device: torch.device) -> SequenceBatch:
        return SequenceBatch(self.items.to(device), self.targets.to(device), self.users.to(device))


@dataclass
class Windows:
    """Training windows: ``inputs`` and ``targets`` ragged alike, ``users`` (n_windows,)."""

    inputs: Ragged
    targets: Ragged
    users: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


def next_item_windows(tokens: Ragged, users: np.ndarray, *, max_len: int) -> Windows:
    """Cut each token sequence into (input, target) windows of at most ``max_len`` steps.

    Sequence ``s`` gives inputs ``s[:-1]`` and targets ``s[1:]``, split into consecutive chunks of
    ``max_len``; chunks without a single real target are dropped."""
    lengths = np.maximum(tokens.lengths - 1, 0)  # (S,) steps per sequence
    n_chunks = -(-lengths // max_len)  # (S,) ceil
    seq_of = np.repeat(np.arange(len(tokens)), n_chunks)  # (W,)
    first = np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    chunk = np.arange(seq_of.size) - first  # (W,) chunk number inside its sequence
    start = tokens.offsets[seq_of] + chunk * max_len  # (W,) position of the chunk's first input
    size = np.minimum(max_len, lengths[seq_of] - chunk * max_len)  # (W,)
    offsets = np.zeros(size.size + 1, dtype=np.int64)
    np.cumsum(size, out=offsets[1:])
    pos = np.repeat(start - offsets[:-1], size) + np.arange(offsets[-1])  # (nnz,) input positions
    inputs = Ragged(tokens.values[pos], offsets)
    targets = Ragged(tokens.values[pos + 1], offsets)
    has_target = (
        np.add.reduceat(targets.values > 0, offsets[:-1]) > 0 if size.size else np.zeros(0, bool)
    )
    keep = np.flatnonzero(has_target & (size > 0))
    return Windows(inputs.select(keep), targets.select(keep), np.asarray(users)[seq_of[keep]])


def length_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None,
    *,
    pool: int = 64,
    max_tokens: int | None = None,
) -> list[np.ndarray]:
    """Batches of window indices of similar length (little padding), in shuffled order.

    The windows are shuffled, cut into pools of ``pool`` batches, each pool sorted by length and cut
    into batches of at most ``batch_size`` windows and, with ``max_tokens``, at most that many steps
    (the sum of the windows' lengths; a single longer window is a batch of its own), so a batch holds
    about the same number of next-item targets whether the windows are short baskets or long
    timelines; the batch order is shuffled again. Without ``rng``: sorted by length, in order."""
    order = rng.permutation(lengths.size) if rng is not None else np.arange(lengths.size)
    span = batch_size * (pool if rng is not None else max(1, lengths.size))
    batches: list[np.ndarray] = []
    for s in range(0, order.size, span):
        part = order[s : s + span]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += _cut(part, lengths[part], batch_size, max_tokens)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _cut(
    part: np.ndarray, lengths: np.ndarray, batch_size: int, max_tokens: int | None
) -> list[np.ndarray]:
    """``part`` cut in order into runs of at most ``batch_size`` items whose ``lengths`` sum to at most
    ``max_tokens`` (a run holds at least one item)."""
    if max_tokens is None:
        return [part[i : i + batch_size] for i in range(0, part.size, batch_size)]
    out, i, ends = [], 0, np.cumsum(lengths)
    while i < part.size:
        before = ends[i - 1] if i else 0
        j = int(
            np.searchsorted(ends, before + max_tokens, side="right")
        )  # first run end past the cap
        j = min(max(j, i + 1), i + batch_size, part.size)
        out.append(part[i:j])
        i = j
    return out


def make_batch(windows: Windows, rows: np.ndarray) -> SequenceBatch:
    """Left-aligned, right-padded (B, T) batch of the windows ``rows``."""
    items = windows.inputs.select(rows).to_padded(pad=0)  # (B, T)
    targets = windows.targets.select(rows).to_padded(pad=0)  # (B, T)
    return SequenceBatch(
        torch.from_numpy(items),
        torch.from_numpy(targets),
        torch.from_numpy(np.asarray(windows.users[rows], dtype=np.int64)),
    )


def next_item_loss(
    hidden: torch.Tensor, targets: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Full-softmax cross-entropy over all items, on the positions with a real target only.

    ``hidden`` (B, T, H), ``targets`` (B, T) with 0 = padding / no target, ``head`` maps (M, H) to (M, N)."""
    mask = targets > 0  # (B, T)
    logits = head(hidden[mask])  # (M, N): only real positions are scored
    return F.cross_entropy(logits, targets[mask])


# encoders --------------------------------------------------------------------------------------
class RecurrentEncoder(nn.Module):
    """Item embedding [+ user embedding, concatenated at every step] -> dropout -> GRU/LSTM layers."""

    def __init__(
        self,
        n_items: int,
        n_users: int,
        *,
        cell: str,
        embedding_dim: int,
        user_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        check_tables("embedding_dim", embedding_dim, {"item": n_items})
        self.item_embedding = nn.Embedding(n_items, embedding_dim)  # row 0 = "nothing bought yet"
        check_tables("user_dim", user_dim, {"user": n_users})
        self.user_embedding = (
            nn.Embedding(n_users, user_dim) if user_dim > 0 else None
        )  # row 0 = unknown
        gates = 3 if cell == "gru" else 4
        check_tables(
            "hidden_dim",
            hidden_dim,
            {"recurrent": gates * num_layers * (embedding_dim + user_dim + hidden_dim)},
            kind="weight matrix",
        )
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(
            embedding_dim + user_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        for emb in (self.item_embedding, self.user_embedding):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.05)

    def forward(
        self,
        items: torch.Tensor,
        users: torch.Tensor | None = None,
        state: RecurrentState | None = None,
    ) -> tuple[torch.Tensor, RecurrentState]:
        """``items`` (B, T), ``users`` (B,) -> outputs (B, T, H) and the state after the last step."""
        x = self.item_embedding(items)  # (B, T, E)
        if self.user_embedding is not None:
            u = self.user_embedding(users)  # (B, U)
            x = torch.cat([x, u[:, None, :].expand(-1, items.shape[1], -1)], dim=2)  # (B, T, E + U)
        out, state = self.rnn(self.dropout(x), state)  # (B, T, H)
        return self.dropout(out), state


class CausalSelfAttentionEncoder(nn.Module):
    """SASRec: item embedding + learned position [+ user embedding] -> causal pre-norm transformer."""

    def __init__(
        self,
        n_items: int,
        n_users: int,
        *,
        max_len: int,
        dim: int,
        num_heads: int,
        num_layers: int,
        dropout: float,
        use_user: bool,
    ) -> None:
        super().__init__()
        check_tables(
            "dim", dim, {"item": n_items, "position": max_len, "user": n_users if use_user else 0}
        )
        self.item_embedding = nn.Embedding(n_items, dim)  # row 0 = "nothing bought yet"
        self.position = nn.Embedding(max_len, dim)
        self.user_embedding = nn.Embedding(n_users, dim) if use_user else None  # row 0 = unknown
        layer = nn.TransformerEncoderLayer(
            dim,
            num_heads,
            dim_feedforward=4 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        for emb in (self.item_embedding, self.position, self.user_embedding):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.05)

    def forward(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """``items`` (B, T) left-aligned -> (B, T, D); position t sees positions <= t only."""
        t = items.shape[1]
        pos = torch.arange(t, device=items.device)  # (T,)
        x = self.item_embedding(items) + self.position(pos)[None]  # (B, T, D)
        if self.user_embedding is not None:
            x = x + self.user_embedding(users)[:, None, :]  # (B, T, D)
        causal = torch.triu(
            torch.full((t, t), float("-inf"), device=items.device), diagonal=1
        )  # (T, T)
        h = self.blocks(self.dropout(x), mask=causal, is_causal=True)  # (B, T, D)
        return self.norm(h)
