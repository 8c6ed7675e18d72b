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
    ``index_select`` (several times faster than advanced indexing), squared norms are BLAS dot products,
    and the L2 gradient of a row drawn c times in the batch is ``2 reg c / B`` times that table row,
    applied on the (small) tables instead of on every gathered row. Gradients are dense tensors built
    with ``index_add_``, so any optimizer works.
    """

    @staticmethod
    def forward(ctx, user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor,
                users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float, bias_reg: float
                ) -> torch.Tensor:
        b, k = neg.shape
        d = item_factors.shape[1]
        neg_flat = neg.reshape(-1)  # (B*K,)
        p = user_factors.index_select(0, users)  # (B, d)
        qi = item_factors.index_select(0, pos)  # (B, d)
        qj = item_factors.index_select(0, neg_flat).view(b, k, d)  # (B, K, d)
        bi, bj = item_bias.index_select(0, pos), item_bias.index_select(0, neg_flat).view(b, k)  # (B,), (B, K)
        diff = qi[:, None, :] - qj  # (B, K, d)
        x = torch.linalg.vecdot(p[:, None, :], diff) + (bi[:, None] - bj)  # (B, K)
        ctx.save_for_backward(user_factors, item_factors, item_bias, users, pos, neg_flat, p, diff, x)
        ctx.reg, ctx.bias_reg = reg, bias_reg
        loss = F.softplus(-x).mean()
        if reg:
            loss = loss + reg * (_sq(p) + _sq(qi) + _sq(qj) / k) / b
        if bias_reg:
            loss = loss + bias_reg * (_sq(bi) + _sq(bj) / k) / b
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        user_factors, item_factors, item_bias, users, pos, neg_flat, p, diff, x = ctx.saved_tensors
        b, k, d = diff.shape
        gx = torch.sigmoid(-x).mul_(-grad / (b * k))  # (B, K) d loss / d x
        g_sum = gx.sum(1)  # (B,)
        if k == 1:
            g_p = diff.view(b, d) * gx  # (B, d)
            g_q = p * gx  # (B, d): + on the positive row, - on the negative
            g_item = torch.zeros_like(item_factors).index_add_(0, pos, g_q)
            g_item.index_add_(0, neg_flat, g_q, alpha=-1.0)
        else:
            g_p = (diff * gx[:, :, None]).sum(1)  # (B, d): Σ_k gx_k (q_i - q_jk)
            g_item = torch.zeros_like(item_factors).index_add_(0, pos, p * g_sum[:, None])
            g_item.index_add_(0, neg_flat, (p[:, None, :] * gx[:, :, None]).view(b * k, d), alpha=-1.0)
        g_user = torch.zeros_like(user_factors).index_add_(0, users, g_p)
        g_bias = torch.zeros_like(item_bias).index_add_(0, pos, g_sum)
        g_bias.index_add_(0, neg_flat, gx.view(-1), alpha=-1.0)
        if ctx.reg or ctx.bias_reg:  # L2 per draw: 2 reg (count of draws of the row) / B times the row
            r, rb = 2 * ctx.reg * grad / b, 2 * ctx.bias_reg * grad / b
            user_draws = torch.bincount(users, minlength=user_factors.shape[0]).to(user_factors.dtype)
            item_draws = torch.bincount(pos, minlength=item_factors.shape[0]).to(item_factors.dtype)
            item_draws += torch.bincount(neg_flat, minlength=item_factors.shape[0]).to(item_factors.dtype) / k
            if ctx.reg:
                g_user.addcmul_(user_draws[:, None], user_factors, value=float(r))
                g_item.addcmul_(item_draws[:, None], item_factors, value=float(r))
            if ctx.bias_reg:
                g_bias.addcmul_(item_draws, item_bias, value=float(rb))
        return g_user, g_item, g_bias, None, None, None, None, None


def _sq(t: torch.Tensor) -> torch.Tensor:
    """Sum of squares in one pass (a BLAS dot product over the flattened tensor)."""
    flat = t.reshape(-1)
    return torch.dot(flat, flat)


def bpr_factor_loss(user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor,
                    users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *, reg: float = 0.0,
                    bias_reg: float = 0.0) -> torch.Tensor:
    """Fused BPR loss over (users (B,), positives (B,), negatives (B, K)); see ``BPRFactorLoss``."""
    return BPRFactorLoss.apply(user_factors, item_factors, item_bias, users, pos, neg, reg, bias_reg)
