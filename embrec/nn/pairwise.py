"""Implicit-feedback losses over positive and sampled negative scores, shared by the factorization models.

    pos = score(users, items)            # (B,)
    neg = score(users[:, None], negs)    # (B, K)
    sampled_log_loss(pos, neg)           # binary log loss: positives labelled 1, negatives 0
    bpr_loss(pos, neg)                   # -log sigmoid(pos - neg), Rendle et al. (2009)

Both take raw scores (logits) and are written with ``softplus`` / ``logsigmoid``, which stay finite for
any score. ``weights`` (B,) optionally weights each positive (and its negatives).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from embrec.nn import compiled


def sampled_log_loss(
    pos: torch.Tensor, neg: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean binary log loss over B positives and their B*K negatives (the retail chapter's loss).

    ``-log σ(s⁺) - Σₖ log(1 - σ(s⁻ₖ))`` per positive, divided by the number of labelled examples B(1+K).
    """
    neg = neg.reshape(pos.shape[0], -1)  # (B, K)
    per_pos = F.softplus(-pos) + F.softplus(neg).sum(dim=1)  # (B,)
    if weights is not None:
        return (weights * per_pos).sum() / (weights.sum() * (1 + neg.shape[1]))
    return per_pos.sum() / (pos.numel() * (1 + neg.shape[1]))


def bpr_loss(
    pos: torch.Tensor, neg: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean ``-log σ(s(u,i) - s(u,j))`` over the (B,) or (B, K) pairs."""
    if neg.dim() == pos.dim() + 1:
        pos = pos.unsqueeze(-1)  # (B, 1)
    per_pair = -F.logsigmoid(pos - neg)  # (B,) or (B, K)
    if weights is not None:
        per_pos = per_pair.reshape(weights.shape[0], -1).mean(dim=1)  # (B,)
        return (weights * per_pos).sum() / weights.sum()
    return per_pair.mean()


class BPRFactorLoss(torch.autograd.Function):
    """BPR loss of a biased dot-product model with a hand-written backward (one fused pass).

    ``loss = mean softplus(-(s(u,i) - s(u,j)))  +  reg (|p_u|² + |q_i|² + mean_k |q_jk|²) / B
    + bias_reg (b_i² + mean_k b_jk²) / B`` with ``s(u, i) = p_u · q_i + b_i``: the same value and
    gradients as ``bpr_loss`` through autograd, without autograd's intermediate tensors.

    Nothing touches a whole table: rows are gathered with one ``index_select`` per table, every L2 term
    is taken on the gathered rows (lazy L2: a row drawn c times in the batch adds ``reg c |row|² / B``),
    and the gradients are **sparse** COO tensors over the drawn rows, so a step costs O(B d) whatever the
    table sizes. Pair them with a sparse-aware optimizer (``embrec.models.training.make_optimizer`` gives
    ``embrec.nn.optim.RowAdam`` for them).

    On CPU the value and the gradients come from one compiled pass over the batch
    (``embrec.nn.kernels.bpr_rows``), which sums them per distinct row (rows in the order first drawn,
    not sorted, so not flagged coalesced; ``RowMaps`` is its scratch); elsewhere from the PyTorch ops
    below, one gradient row per draw (a row drawn twice appears twice) — the reference the compiled
    kernel is tested against.
    """

    @staticmethod
    def forward(
        ctx,
        user_factors: torch.Tensor,
        item_factors: torch.Tensor,
        item_bias: torch.Tensor,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        reg: float,
        bias_reg: float,
        maps: RowMaps | None,
    ) -> torch.Tensor:
        b, k = neg.shape
        d = item_factors.shape[1]
        neg_flat = neg.reshape(-1)  # (B*K,)
        items = torch.cat([pos, neg_flat])  # (B + B*K,) positives first
        ctx.shapes = (user_factors.shape, item_factors.shape, item_bias.shape)
        if _compiled(user_factors, item_factors, item_bias):  # CPU: value and gradients in one pass
            kernels = compiled.kernels()
            u, it = users.contiguous().numpy(), items.numpy()
            uniq_u, uniq_i = (
                torch.empty(b, dtype=torch.int64),
                torch.empty(b + b * k, dtype=torch.int64),
            )
            g_p = torch.empty((b, d), dtype=user_factors.dtype)  # (<= B, d) per distinct user
            g_q = torch.empty((b + b * k, d), dtype=item_factors.dtype)  # (<= B + B*K, d) per item
            g_b = torch.empty(b + b * k, dtype=item_bias.dtype)  # (<= B + B*K,)
            maps = maps or RowMaps()
            loss, n_u, n_i = kernels.bpr_rows(
                user_factors.detach().numpy(),
                item_factors.detach().numpy(),
                item_bias.detach().numpy(),
                u,
                it[:b],
                it[b:].reshape(b, k),
                float(reg),
                float(bias_reg),
                (maps.get(user_factors.shape[0]), maps.get(item_factors.shape[0], second=True)),
                uniq_u.numpy(),
                g_p.numpy(),
                uniq_i.numpy(),
                g_q.numpy(),
                g_b.numpy(),
                kernels.bpr_consts(b, k, reg, bias_reg, g_p.numpy().dtype),
            )
            # one index tensor for the item factors and biases: RowAdam steps them in one pass
            ctx.save_for_backward(uniq_u[:n_u], uniq_i[:n_i], g_p[:n_u], g_q[:n_i], g_b[:n_i])
            ctx.compiled = True
            return torch.tensor(loss, dtype=user_factors.dtype)
        ctx.compiled = False
        p = user_factors.index_select(0, users)  # (B, d)
        q = item_factors.index_select(0, items)  # (B + B*K, d)
        qi, qj = q[:b], q[b:].view(b, k, d)  # (B, d), (B, K, d)
        bias = item_bias.index_select(0, items)  # (B + B*K,)
        diff = qi[:, None, :] - qj  # (B, K, d)
        x = torch.linalg.vecdot(p[:, None, :], diff) + (
            bias[:b, None] - bias[b:].view(b, k)
        )  # (B, K)
        loss = F.softplus(-x).mean()
        if reg:  # a negative weighs 1/K
            pf, qif, qjf = p.reshape(-1), qi.reshape(-1), q[b:].reshape(-1)
            loss = (
                loss + reg * (torch.dot(pf, pf) + torch.dot(qif, qif) + torch.dot(qjf, qjf) / k) / b
            )
        if bias_reg:
            bi, bj = bias[:b], bias[b:]
            loss = loss + bias_reg * (torch.dot(bi, bi) + torch.dot(bj, bj) / k) / b
        ctx.save_for_backward(users, items, p, q, bias, diff, x)
        ctx.reg, ctx.bias_reg = reg, bias_reg
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u_shape, i_shape, b_shape = ctx.shapes
        if ctx.compiled:  # gradients made with the loss: scaled by the incoming gradient
            users, items, g_p, g_q, g_b = ctx.saved_tensors
            if float(grad) != 1.0:
                g_p, g_q, g_b = g_p * grad, g_q * grad, g_b * grad
            return (
                sparse_rows(users, g_p, u_shape),
                sparse_rows(items, g_q, i_shape),
                sparse_rows(items, g_b, b_shape),
                *(None,) * 6,  # users, pos, neg, reg, bias_reg, maps
            )
        users, items, p, q, bias, diff, x = ctx.saved_tensors
        b, k, d = diff.shape
        gx = torch.sigmoid(-x).mul_(-grad / (b * k))  # (B, K) d loss / d x
        g_sum = gx.sum(1)  # (B,)
        neg_gx = -gx  # (B, K)
        if k == 1:
            g_p = diff.view(b, d) * gx  # (B, d)
            g_pos, g_neg = p * gx, p * neg_gx  # (B, d)
        else:
            g_p = (diff * gx[:, :, None]).sum(1)  # (B, d): Σ_k gx_k (q_i - q_jk)
            g_pos, g_neg = p * g_sum[:, None], (p[:, None, :] * neg_gx[:, :, None]).view(b * k, d)
        g_q = torch.cat([g_pos, g_neg])  # (B + B*K, d)
        g_b = torch.cat([g_sum, neg_gx.view(-1)])  # (B + B*K,)
        if ctx.reg:
            r = float(2 * ctx.reg * grad / b)
            g_p.add_(p, alpha=r)
            g_q[:b].add_(q[:b], alpha=r)
            g_q[b:].add_(q[b:], alpha=r / k)
        if ctx.bias_reg:
            r = float(2 * ctx.bias_reg * grad / b)
            g_b[:b].add_(bias[:b], alpha=r)
            g_b[b:].add_(bias[b:], alpha=r / k)
        return (
            sparse_rows(users, g_p, u_shape),
            sparse_rows(items, g_q, i_shape),
            sparse_rows(items, g_b, b_shape),
            *(None,) * 6,
        )


def _compiled(*tables: torch.Tensor) -> bool:
    """Whether the compiled CPU kernel (``embrec.nn.kernels.bpr_rows``) can take these tables: contiguous
    CPU tensors of one float type, and Numba installed."""
    return (
        all(t.device.type == "cpu" and t.is_contiguous() for t in tables)
        and len({t.dtype for t in tables}) == 1
        and tables[0].dtype in (torch.float32, torch.float64)
        and compiled.kernels() is not None
    )


def sparse_rows(rows: torch.Tensor, values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A sparse COO gradient of a table of ``shape``: ``values[n]`` added to row ``rows[n]`` (repeats
    allowed, uncoalesced)."""
    return torch.sparse_coo_tensor(rows[None], values, shape, check_invariants=False)


class GatherRows(torch.autograd.Function):
    """``table.index_select(0, rows)`` whose gradient is a sparse COO tensor over ``rows`` (for the
    sparse optimizers), not a dense table of zeros."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.shape = table.shape
        return table.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        return sparse_rows(rows, grad.contiguous(), ctx.shape), None


def gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (any trailing shape) with a sparse row gradient; see ``GatherRows``."""
    return GatherRows.apply(table, rows)


def bpr_factor_loss(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    item_bias: torch.Tensor,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    reg: float = 0.0,
    bias_reg: float = 0.0,
    maps: RowMaps | None = None,
) -> torch.Tensor:
    """Fused BPR loss over (users (B,), positives (B,), negatives (B, K)); see ``BPRFactorLoss``.
    ``maps``: scratch kept between a training run's batches (``RowMaps``); without it each call makes
    its own, which costs O(users + items)."""
    return BPRFactorLoss.apply(
        user_factors, item_factors, item_bias, users, pos, neg, reg, bias_reg, maps
    )


class RowMaps:
    """Scratch of the compiled BPR loss, kept between batches: int32 row-to-position maps, one per table
    size (all -1 between calls), with which the loss sums its gradients per distinct row in O(batch)
    instead of sorting or touching a table."""

    def __init__(self) -> None:
        self._maps: dict[tuple[int, bool], np.ndarray] = {}

    def get(self, rows: int, *, second: bool = False) -> np.ndarray:
        """The map for a table of ``rows`` rows (``second``: a second map of that size, for when the
        user and item tables have the same number of rows)."""
        key = (int(rows), second)
        if key not in self._maps:
            self._maps[key] = np.full(int(rows), -1, dtype=np.int32)
        return self._maps[key]
