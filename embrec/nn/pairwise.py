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
    gradients as ``bpr_loss`` through autograd, without autograd's intermediate tensors, so a CPU step
    costs about a third less. Gradients are dense tensors built with ``index_add_`` (any optimizer).
    """

    @staticmethod
    def forward(ctx, user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor,
                users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float, bias_reg: float
                ) -> torch.Tensor:
        b, k = neg.shape
        p = user_factors[users]  # (B, d)
        qi = item_factors[pos]  # (B, d)
        qj = item_factors[neg]  # (B, K, d)
        bi, bj = item_bias[pos], item_bias[neg]  # (B,), (B, K)
        diff = qi[:, None, :] - qj  # (B, K, d)
        x = (p[:, None, :] * diff).sum(-1) + bi[:, None] - bj  # (B, K)
        ctx.save_for_backward(user_factors, item_factors, item_bias, users, pos, neg, p, qi, qj, bi, bj, diff, x)
        ctx.reg, ctx.bias_reg = reg, bias_reg
        loss = F.softplus(-x).mean()
        if reg:
            loss = loss + reg * (p.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / k) / b
        if bias_reg:
            loss = loss + bias_reg * (bi.pow(2).sum() + bj.pow(2).sum() / k) / b
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        user_factors, item_factors, item_bias, users, pos, neg, p, qi, qj, bi, bj, diff, x = ctx.saved_tensors
        b, k = neg.shape
        gx = -torch.sigmoid(-x) * (grad / (b * k))  # (B, K) d loss / d x
        r, rb = 2 * ctx.reg * grad / b, 2 * ctx.bias_reg * grad / b
        g_p = (gx[:, :, None] * diff).sum(1) + r * p  # (B, d)
        g_qi = gx.sum(1, keepdim=True) * p + r * qi  # (B, d)
        g_qj = -gx[:, :, None] * p[:, None, :] + (r / k) * qj  # (B, K, d)
        g_user = torch.zeros_like(user_factors).index_add_(0, users, g_p)
        g_item = torch.zeros_like(item_factors).index_add_(0, pos, g_qi)
        g_item.index_add_(0, neg.reshape(-1), g_qj.reshape(b * k, -1))
        g_bias = torch.zeros_like(item_bias).index_add_(0, pos, gx.sum(1) + rb * bi)
        g_bias.index_add_(0, neg.reshape(-1), (-gx + (rb / k) * bj).reshape(-1))
        return g_user, g_item, g_bias, None, None, None, None, None


def bpr_factor_loss(user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor,
                    users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *, reg: float = 0.0,
                    bias_reg: float = 0.0) -> torch.Tensor:
    """Fused BPR loss over (users (B,), positives (B,), negatives (B, K)); see ``BPRFactorLoss``."""
    return BPRFactorLoss.apply(user_factors, item_factors, item_bias, users, pos, neg, reg, bias_reg)
