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
