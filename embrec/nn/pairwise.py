"""Implicit-feedback losses over positive and sampled negative scores, shared by the factorization models.

    pos = score(users, items)            # (B,)
    neg = score(users[:, None], negs)    # (B, K)
    sampled_log_loss(pos, neg)           # binary log loss: positives labelled 1, negatives 0
    bpr_loss(pos, neg)                   # -log sigmoid(pos - neg), Rendle et al. (2009)

Both take raw scores (logits) and are written with ``softplus`` / ``logsigmoid``, which stay finite for
any score. ``weights`` (B,) optionally weights each positive (and its negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_log_loss(pos: torch.Tensor, neg: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary log loss over B positives and their B*K negatives (the retail chapter's loss).

    ``-log σ(s⁺) - Σₖ log(1 - σ(s⁻ₖ))`` per positive, divided by the number of labelled examples B(1+K).
    """
    neg = neg.reshape(pos.shape[0], -1)  # (B, K)
    per_pos = F.softplus(-pos) + F.softplus(neg).sum(dim=1)  # (B,)
    if weights is not None:
        return (weights * per_pos).sum() / (weights.sum() * (1 + neg.shape[1]))
    return per_pos.sum() / (pos.numel() * (1 + neg.shape[1]))


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
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

    A CPU step is memory-bound, so the kernel counts passes over the (B, d) rows: rows are gathered with
    one ``index_select`` per table (several times faster than advanced indexing), and every L2 term is
    taken on the (small) tables: a row drawn c times in the batch adds ``reg c |row|² / B`` to the loss
    and ``2 reg c / B`` times the row to its gradient. Gradients are dense tensors built with
    ``index_add_``, so any optimizer works.
    """

    @staticmethod
    def forward(ctx, user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor,
                users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float, bias_reg: float
                ) -> torch.Tensor:
        b, k = neg.shape
        d = item_factors.shape[1]
        neg_flat = neg.reshape(-1)  # (B*K,)
        items = torch.cat([pos, neg_flat])  # (B + B*K,) positives first
        p = user_factors.index_select(0, users)  # (B, d)
        q = item_factors.index_select(0, items)  # (B + B*K, d)
        qi, qj = q[:b], q[b:].view(b, k, d)  # (B, d), (B, K, d)
        bias = item_bias.index_select(0, items)  # (B + B*K,)
        diff = qi[:, None, :] - qj  # (B, K, d)
        x = torch.linalg.vecdot(p[:, None, :], diff) + (bias[:b, None] - bias[b:].view(b, k))  # (B, K)
        loss = F.softplus(-x).mean()
        user_draws = item_draws = None
        if reg or bias_reg:  # how often each row is drawn; a negative counts 1/K
            user_draws = torch.bincount(users, minlength=user_factors.shape[0]).to(user_factors.dtype)
            weights = None if k == 1 else torch.cat([torch.ones(b, dtype=q.dtype), torch.full((b * k,), 1.0 / k, dtype=q.dtype)])
            item_draws = torch.bincount(items, weights=weights, minlength=item_factors.shape[0]).to(q.dtype)
        if reg:
            sq = torch.dot(user_draws, _row_sq(user_factors)) + torch.dot(item_draws, _row_sq(item_factors))
            loss = loss + reg * sq / b
        if bias_reg:
            loss = loss + bias_reg * torch.dot(item_draws, item_bias * item_bias) / b
        ctx.save_for_backward(user_factors, item_factors, item_bias, users, pos, neg_flat, p, diff, x,
                              user_draws, item_draws)
        ctx.reg, ctx.bias_reg = reg, bias_reg
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (user_factors, item_factors, item_bias, users, pos, neg_flat, p, diff, x, user_draws,
         item_draws) = ctx.saved_tensors
        b, k, d = diff.shape
        gx = torch.sigmoid(-x).mul_(-grad / (b * k))  # (B, K) d loss / d x
        g_sum = gx.sum(1)  # (B,)
        neg_gx = -gx  # (B, K); index_add_ with alpha != 1 takes a path several times slower
        if k == 1:
            g_p = diff.view(b, d) * gx  # (B, d)
            g_pos, g_neg = p * gx, p * neg_gx  # (B, d)
        else:
            g_p = (diff * gx[:, :, None]).sum(1)  # (B, d): Σ_k gx_k (q_i - q_jk)
            g_pos, g_neg = p * g_sum[:, None], (p[:, None, :] * neg_gx[:, :, None]).view(b * k, d)
        g_item = torch.zeros_like(item_factors).index_add_(0, pos, g_pos).index_add_(0, neg_flat, g_neg)
        g_user = torch.zeros_like(user_factors).index_add_(0, users, g_p)
        g_bias = torch.zeros_like(item_bias).index_add_(0, pos, g_sum).index_add_(0, neg_flat, neg_gx.view(-1))
        if ctx.reg:
            r = float(2 * ctx.reg * grad / b)
            g_user.addcmul_(user_draws[:, None], user_factors, value=r)
            g_item.addcmul_(item_draws[:, None], item_factors, value=r)
        if ctx.bias_reg:
            g_bias.addcmul_(item_draws, item_bias, value=float(2 * ctx.bias_reg * grad / b))
        return g_user, g_item, g_bias, None, None, None, None, None


def _row_sq(t: torch.Tensor) -> torch.Tensor:
    """(rows,) squared norm of every row."""
    return torch.linalg.vector_norm(t, dim=1).square()


def bpr_factor_loss(user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor,
                    users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *, reg: float = 0.0,
                    bias_reg: float = 0.0) -> torch.Tensor:
    """Fused BPR loss over (users (B,), positives (B,), negatives (B, K)); see ``BPRFactorLoss``."""
    return BPRFactorLoss.apply(user_factors, item_factors, item_bias, users, pos, neg, reg, bias_reg)
