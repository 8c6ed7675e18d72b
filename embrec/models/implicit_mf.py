"""Implicit matrix factorization with sampled negatives and the binary log loss (the retail chapter).

    s(u, i) = b + b_u + b_i + p_u · q_i,      P(bought) = σ(s)
    loss    = log loss over each positive (u, i) and K sampled negatives (u, j)  +  reg · L2 per example

Every epoch visits each training event once (shuffled), in batches of ``batch_size`` positives, each
with ``n_negatives`` items drawn from the negative sampler (uniform, or popularity ** ``neg_alpha``);
Row-wise lazy Adam (``embrec.nn.optim.RowAdam``) through ``train_loop``: the gathers give sparse row
gradients, so a step touches the batch's rows only. Repeat purchases are repeated events, so they weigh more. A new user is
folded in by minimising that user's part of the training objective with the negatives replaced by
their expectation over the sampler (``_fold_in_grad``), plus the Gaussian prior of the trained
users (see ``embrec.models.factor``): the closed-form start is one exact Newton
step from zero, then at most ``fold_in_steps`` BFGS steps (see ``embrec.models.factor``); the default 4
is the fewest steps within 0.01 top-10 overlap of the converged fold-in on synthetic, ml-100k and
Online Retail models (``benchmarks/choose_fold_in_steps.py``).

``history_weight`` w > 0 blends in the user's own history for shop logs where repeat purchases are the
point: rank by ``s(u, i) / std_j s(u, j) + w log(1 + times i is in the history)`` (exact retrieval;
see ``embrec.models.factor``).

The defaults ``lr`` 0.02 and ``reg`` 0.01 (before: 0.005 and 0.001) were chosen by
``benchmarks/choose_defaults.py`` on validation parts carved from training data only (ml-100k and Online
Retail leave-last-out, ml100k-top10, and two parts imitating a log with few users and a wide catalogue;
docs/benchmarks.md, "Defaults chosen on validation parts"): better on all five, at the same fit time.
With the old ones, 10 epochs of a 33k-event log (~70 Adam steps) left the model below popularity.

``min_steps`` (default 100): the fewest Adam steps a fit takes, see ``SampledFactorization``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch

from embrec.errors import check_float, check_positive_int
from embrec.models.factor import BiasedDot, SampledFactorization
from embrec.models.foldin import sigmoid
from embrec.models.search import FloatRange, IntRange, Param
from embrec.nn.pairwise import gather_rows, sampled_log_loss


class ImplicitMF(SampledFactorization):
    """Biased dot-product model trained as a classifier of bought vs sampled items."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "factors": IntRange(16, 256, log=True),
        "lr": FloatRange(1e-3, 0.1, log=True),
        "reg": FloatRange(1e-6, 0.1, log=True),
        "epochs": IntRange(3, 40),
        "n_negatives": IntRange(1, 20, log=True),
        "neg_alpha": FloatRange(0.0, 1.0),
    }

    _fold_in_user_bias = True

    def __init__(
        self,
        *,
        factors: int = 64,
        n_negatives: int = 5,
        epochs: int = 10,
        batch_size: int = 5000,
        min_steps: int = 100,
        lr: float = 0.02,
        reg: float = 1e-2,
        neg_alpha: float = 0.0,
        init_std: float = 0.1,
        history_weight: float = 0.0,
        fold_in_steps: int = 4,
        valid_k: int = 5,
        valid_exclude_seen: bool = False,
        patience: int | None = None,
        device: str | None = None,
        seed: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.factors = check_positive_int("factors", factors)
        self.n_negatives = check_positive_int("n_negatives", n_negatives)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.min_steps = check_positive_int("min_steps", min_steps, minimum=0)
        self.lr = check_float("lr", lr, low=0.0, low_open=True)
        self.reg = check_float("reg", reg, low=0.0)
        self.neg_alpha = check_float("neg_alpha", neg_alpha, low=0.0)
        self.init_std = check_float("init_std", init_std, low=0.0)
        self.history_weight = check_float("history_weight", history_weight, low=0.0)
        self.fold_in_steps = check_positive_int("fold_in_steps", fold_in_steps)
        self.valid_k = check_positive_int("valid_k", valid_k)
        self.valid_exclude_seen = bool(valid_exclude_seen)
        self.patience = None if patience is None else check_positive_int("patience", patience)
        self.device = device
        self.seed = int(seed)
        self.progress = progress

    def _epoch_batches(
        self, rng: np.random.Generator, epoch: int
    ) -> Iterator[tuple[np.ndarray, ...]]:
        n = self.pos_users_.size
        order = rng.permutation(n)
        negatives = self.sampler_.sample(rng, (n, self.n_negatives))  # (N, K)
        b = self.fit_batch_size_
        for s in range(0, n, b):
            idx = order[s : s + b]
            yield self.pos_users_[idx], self.pos_items_[idx], negatives[s : s + b]

    def _batch_loss(self, module: BiasedDot, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        users, pos, neg = batch  # (B,), (B,), (B, K)
        b, k = neg.shape
        items = torch.cat([pos[:, None], neg], dim=1)  # (B, 1 + K): the positive first
        flat = items.reshape(-1)
        # gathers with sparse row gradients: the optimizer touches the drawn rows only
        p = gather_rows(module.user_factors, users)  # (B, d)
        q = gather_rows(module.item_factors, flat).view(b, 1 + k, -1)  # (B, 1 + K, d)
        bias = gather_rows(module.item_bias, flat).view(b, 1 + k)  # (B, 1 + K)
        s = torch.linalg.vecdot(p[:, None, :], q) + bias  # (B, 1 + K)
        s = s + (gather_rows(module.user_bias, users) + module.global_bias)[:, None]
        loss = sampled_log_loss(s[:, 0], s[:, 1:])
        if self.reg:  # k1 |p_u|² + |q_i|² + Σ_k |q_jk|², per labelled example
            k1 = 1 + k
            pf, qf = p.reshape(-1), q.reshape(-1)
            loss = loss + self.reg * (k1 * torch.dot(pf, pf) + torch.dot(qf, qf)) / (b * k1)
        return loss

    # fold-in: one user's expected training objective, z = [p, b_u], s_j = q_j · p + b_u + b_j + b,
    #   f(z) = Σ_i w_i softplus(-s_i) + k W Σ_j π_j softplus(s_j) + reg (1 + k) W |p|²
    # (w_i the count of history item i, W = Σ w_i, π the negative sampler): what a user's events
    # contribute to the training loss with the sampled negatives replaced by their expectation.
    # Convex (a sum of softplus of affine functions plus a ridge): BFGS from the exact Newton step at 0,
    # whose Hessian (model-level sums over the catalogue) starts the inverse-Hessian estimate. (From
    # the mean trained user instead of 0, random histories need one gradient less, but on a bimodal
    # user population that mean lies between the modes: the planted blocks of tests/test_fold_in.py
    # then need 5 steps, not 4, to reach the converged top 5.)
    def _fold_in_moments(self, ctx):
        qt = np.hstack([ctx["q"], np.ones((ctx["q"].shape[0], 1), dtype=np.float32)])  # (I, d + 1)
        sig = 1.0 / (1.0 + np.exp(-ctx["bias"].astype(np.float64)))  # σ(s_j) at z = 0
        pi = ctx["probs"].astype(np.float64)
        q64 = qt.astype(np.float64)
        return {
            "qt": qt,
            "neg_grad0": q64.T @ (pi * sig),  # Σ π σ q̃
            "neg_hess0": (q64.T * (pi * sig * (1 - sig))) @ q64,  # Σ π σ' q̃ q̃ᵀ
        }

    def _fold_in_start(self, ctx, items, w):
        """f's second-order expansion at z = 0 (exact; the catalogue's part is model-level): one
        Newton step on it is a weighted ridge regression of the history on [q, 1]."""
        d, k, big_w = ctx["q"].shape[1], self.n_negatives, float(w.sum())
        qh = ctx["qt"][items].astype(np.float64)  # (P, d + 1)
        sig = 1.0 / (1.0 + np.exp(-ctx["bias"][items].astype(np.float64)))
        grad = -qh.T @ (w * (1 - sig)) + k * big_w * ctx["neg_grad0"]
        hess = (qh.T * (w * sig * (1 - sig))) @ qh + k * big_w * ctx["neg_hess0"]
        hess.flat[: d * (d + 2) : d + 2] += 2 * self.reg * (1 + k) * big_w  # the p block's diagonal
        return np.zeros(d + 1), grad, hess

    def _fold_in_grad(self, ctx, items, w, z, work):
        qt = ctx["qt"]
        if not work:  # per user, once: the history's rows and the constants
            big_w, k = float(w.sum()), self.n_negatives
            work.update(
                qh=qt[items].astype(np.float64),
                kw=np.float32(k * big_w),
                reg=np.r_[np.full(qt.shape[1] - 1, 2 * self.reg * (1 + k) * big_w), 0.0],
            )
        s = qt @ z.astype(np.float32)  # (I,)
        s += ctx["bias"]
        sig = sigmoid(s)  # σ(s_j)
        grad = work["qh"].T @ (w * (sig[items] - 1))  # Σ_i w_i (σ_i - 1) q̃_i
        sig *= ctx["probs"]
        sig *= work["kw"]
        grad += qt.T @ sig  # k W Σ_j π_j σ_j q̃_j
        grad += work["reg"] * z  # the ridge on p
        return grad
