"""Bayesian Personalized Ranking (Rendle et al. 2009; the retail chapter's TF BPR).

    s(u, i) = p_u · q_i + b_i
    loss    = -log σ(s(u, i) - s(u, j))  +  reg (|p_u|² + |q_i|² + |q_j|²)  +  bias_reg (b_i² + b_j²)

Triples (u, i, j) are bootstrap-sampled: each epoch draws as many positives as there are (with
replacement) and ``n_negatives`` items j per positive from the negative sampler. ``positives="events"``
draws training events, so an item bought five times is drawn five times as often (repeat purchases
weigh in); ``positives="pairs"`` draws distinct (user, item) pairs, Rendle's D_S and what the
``implicit`` library iterates over (an epoch is then one triple per pair); with
``verify_negatives`` a j the user has bought is redrawn (vectorised). Batches are large and the loss
has a hand-written backward (``embrec.nn.pairwise.BPRFactorLoss``) whose gradients are sparse over the
drawn rows, and ``embrec.nn.optim.RowAdam`` updates those rows only (lazy Adam, lazy L2), so a step costs
O(batch), not O(users + items); benchmarks/bench_factorization.py times it against the ``implicit`` library's BPR. A new user is folded in by minimising that user's expected BPR
objective over the sampler with the items fixed (``_fold_in_grad``), plus the Gaussian prior of the
trained users (see ``embrec.models.factor``): a closed-form start (softplus
replaced by its quadratic expansion at 0: a ridge regression), then at most ``fold_in_steps`` BFGS
steps from there, started with that expansion's Hessian (see ``embrec.models.factor``). The default 8
is the fewest steps whose top-10 overlap with the stored users is within 0.01 of the converged one on
synthetic, ml-100k and Online Retail models (``benchmarks/choose_fold_in_steps.py``).

``history_weight`` w > 0 blends in the user's own history for shop logs where repeat purchases are the
point: rank by ``s(u, i) / std_j s(u, j) + w log(1 + times i is in the history)`` (exact retrieval;
see ``embrec.models.factor``).

The defaults ``lr`` 0.02 and ``reg`` 0.01 (before: 0.005 and 1e-4) were chosen by
``benchmarks/choose_defaults.py`` on validation parts carved from training data only (ml-100k and Online
Retail leave-last-out, ml100k-top10, and two parts imitating a log with few users and a wide catalogue;
docs/benchmarks.md, "Defaults chosen on validation parts"): the best worst case of the candidates run on
all five (0.91 of the best, the old 0.87), at the same fit time; a higher ``lr`` alone overfits the wide
catalogue, the stronger L2 holds it. ``implicit``'s own BPR (SGD, 100 passes) stays ahead on two parts.

``min_steps`` (default 100): the fewest Adam steps a fit takes, see ``SampledFactorization``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch

from embrec.errors import check_choice, check_float, check_positive_int
from embrec.models.factor import BiasedDot, SampledFactorization
from embrec.models.foldin import pair_block, scratch
from embrec.models.search import FloatRange, IntRange, Param
from embrec.nn import compiled
from embrec.nn.pairwise import RowMaps, bpr_factor_loss
from embrec.nn.sampling import SeenPairs, resample_seen


class BPR(SampledFactorization):
    """Matrix factorization with an item bias, trained on the pairwise BPR criterion."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "factors": IntRange(16, 256, log=True),
        "lr": FloatRange(1e-3, 0.1, log=True),
        "reg": FloatRange(1e-6, 0.1, log=True),
        "epochs": IntRange(5, 60),
        "n_negatives": IntRange(1, 10),
        "neg_alpha": FloatRange(0.0, 1.0),
    }

    def __init__(
        self,
        *,
        factors: int = 64,
        n_negatives: int = 1,
        epochs: int = 30,
        batch_size: int = 15000,
        min_steps: int = 100,
        lr: float = 0.02,
        reg: float = 1e-2,
        bias_reg: float = 1e-4,
        neg_alpha: float = 0.0,
        verify_negatives: bool = True,
        positives: str = "events",
        init_std: float = 0.1,
        history_weight: float = 0.0,
        fold_in_steps: int = 8,
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
        self.bias_reg = check_float("bias_reg", bias_reg, low=0.0)
        self.neg_alpha = check_float("neg_alpha", neg_alpha, low=0.0)
        self.verify_negatives = bool(verify_negatives)
        self.positives = check_choice("positives", positives, ("events", "pairs"))
        self.init_std = check_float("init_std", init_std, low=0.0)
        self.history_weight = check_float("history_weight", history_weight, low=0.0)
        self.fold_in_steps = check_positive_int("fold_in_steps", fold_in_steps)
        self.valid_k = check_positive_int("valid_k", valid_k)
        self.valid_exclude_seen = bool(valid_exclude_seen)
        self.patience = None if patience is None else check_positive_int("patience", patience)
        self.device = device
        self.seed = int(seed)
        self.progress = progress

    def _positives(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.positives == "pairs":  # each distinct (user, item) pair once
            n = np.int64(self.items_.size)
            keys = np.unique(users.astype(np.int64) * n + items)
            return keys // n, keys % n
        return users, items

    def _prepare(self, rng: np.random.Generator) -> None:
        self.seen_pairs_ = (
            SeenPairs(self.seen_, self.items_.size) if self.verify_negatives else None
        )

    def _fold_in_weights(self, counts: np.ndarray) -> np.ndarray:
        # fold-in weighs a history's pairs as training drew them: by count, or each distinct pair once
        return (
            np.ones(counts.shape, dtype=np.float32)
            if self.positives == "pairs"
            else counts.astype(np.float32)
        )

    def _epoch_batches(
        self, rng: np.random.Generator, epoch: int
    ) -> Iterator[tuple[np.ndarray, ...]]:
        n = self.pos_users_.size
        idx = rng.integers(0, n, size=n)  # bootstrap: events drawn with replacement
        users, pos = self.pos_users_[idx], self.pos_items_[idx]
        neg = self.sampler_.sample(rng, (n, self.n_negatives))  # (N, K)
        if self.seen_pairs_ is not None:
            neg = resample_seen(rng, self.sampler_, users, neg, self.seen_pairs_)
        for s in range(0, n, self.fit_batch_size_):
            e = s + self.fit_batch_size_
            yield users[s:e], pos[s:e], neg[s:e]

    def _batch_loss(self, module: BiasedDot, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        users, pos, neg = batch  # (B,), (B,), (B, K)
        return bpr_factor_loss(
            module.user_factors,
            module.item_factors,
            module.item_bias,
            users,
            pos,
            neg,
            reg=self.reg,
            bias_reg=self.bias_reg,
            maps=self.__dict__.setdefault("_row_maps", RowMaps()),  # scratch for this fit
        )

    # fold-in: one user's expected training objective over the sampler, p the user's factors,
    #   f(p) = Σ_i w_i Σ_j π'_j softplus(s_j - s_i) + reg W |p|²,    s_j = p · q_j + b_j
    # (w_i the weight of history item i as training draws it, W = Σ w_i; π' the negative sampler,
    # without the user's own items and renormalised when ``verify_negatives``). Convex in p.
    def _fold_in_moments(self, ctx):
        q = ctx["q"].astype(np.float64)
        pi, b = ctx["probs"].astype(np.float64), ctx["bias"].astype(np.float64)
        return {"m2": (q.T * pi) @ q, "m1": q.T @ pi, "mb": q.T @ (pi * b), "beta": float(pi @ b)}

    def _negatives(self, ctx, items):
        """(π' (I,) float32, its normaliser Z): the sampler's distribution over a user's negatives."""
        pi = ctx["probs"]
        if not self.verify_negatives:
            return pi, 1.0
        z = max(1.0 - float(pi[items].astype(np.float64).sum()), 1e-12)
        out = pi / np.float32(z)
        out[items] = 0.0
        return out, z

    def _fold_in_start(self, ctx, items, w):
        """f with softplus(x) replaced by its expansion log 2 + x/2 + x²/8 at 0, around p = 0: one
        Newton step on it is a ridge regression of the history against the (sampler-weighted)
        catalogue, from model-level sums only. With ``verify_negatives`` the history leaves the
        sampler (π' = π without the history, / Z): W·m2' + Σ w_i q_i q_iᵀ = (W/Z)·m2 + Qᵀ diag(w - W π_h / Z) Q
        (one (d, P) x (P, d) product)."""
        qh = ctx["q"][items].astype(np.float64)  # (P, d)
        bh, d, big_w = ctx["bias"][items].astype(np.float64), qh.shape[1], float(w.sum())
        m2, m1, mb, beta = ctx["m2"], ctx["m1"], ctx["mb"], ctx["beta"]
        coef, a = w, big_w  # the weights of the history rows and of the catalogue's moments
        if self.verify_negatives:  # the user's own items leave the negatives
            ph = ctx["probs"][items].astype(np.float64)
            z = max(1.0 - float(ph.sum()), 1e-12)
            a = big_w / z
            coef = w - a * ph
            m1, beta = (m1 - qh.T @ ph) / z, (beta - float(ph @ bh)) / z
        h = qh.T @ w  # Σ w_i q_i
        mh = np.outer(m1, h)
        hess = 0.25 * (a * m2 + (qh.T * coef) @ qh - mh - mh.T)
        hess.flat[:: d + 1] += 2 * self.reg * big_w
        grad = 0.5 * (big_w * m1 - h) + 0.25 * (
            a * mb + qh.T @ (coef * bh) - m1 * float(w @ bh) - beta * h
        )
        return np.zeros(d), grad, hess

    def _fold_in_grad(self, ctx, items, w, z, work):
        q = ctx["q"]
        kernels = compiled.kernels()
        if not work:  # per user, once: the negatives' distribution, the history's rows and weights
            work["pi"] = self._negatives(ctx, items)[0]
            work["reg"] = 2 * self.reg * float(w.sum())
            if (
                kernels is not None
            ):  # one compiled pass over the cells, no history x catalogue block
                work["items"] = np.ascontiguousarray(items, dtype=np.int64)
                work["qh"] = q[items].astype(np.float64)
                work["w32"] = np.ascontiguousarray(w, dtype=np.float32)
                work["row"] = np.empty(items.size, dtype=np.float32)
                work["col"] = np.empty(q.shape[0], dtype=np.float32)
            else:  # NumPy: blocks of history rows, each a memory-bounded block x catalogue matrix
                step = pair_block(q.shape[0])
                work["blocks"] = [
                    (
                        items[lo : lo + step],
                        q[items[lo : lo + step]].astype(np.float64),
                        w[lo : lo + step].astype(np.float32),
                    )
                    for lo in range(0, items.size, step)
                ]
        pi = work["pi"]
        s = q @ z.astype(np.float32)  # (I,)
        s += ctx["bias"]
        # σ(s_j - s_i) = e_j / (e_j + e_i) with e = exp(s - max s): one exp per item, not per pair
        # (5x faster than a tanh per cell); the clip keeps e > 0 (float32), exact unless scores
        # spread over more than 80
        s -= s.max()
        e = np.exp(np.maximum(s, np.float32(-80.0), out=s), out=s)
        grad = work["reg"] * z
        if kernels is not None:
            col, row = work["col"], work["row"]
            col.fill(0.0)
            kernels.bpr_fold_pairs(e, work["items"], work["w32"], pi, col, row)
            grad -= work["qh"].T @ (work["w32"] * row)  # Σ_i w_i q_i Σ_j π'_j σ_ij
            col *= pi
            return grad + q.T @ col  # + Σ_j π'_j q_j Σ_i w_i σ_ij
        col = None
        buf = scratch(ctx, "pairs", (work["blocks"][0][0].size, q.shape[0]))  # every block's
        for it, qh, wb in work["blocks"]:  # blocks of history items: memory block x catalogue
            sig = buf[: it.size]
            np.add(e[None, :], e[it][:, None], out=sig)  # (P, I)
            np.divide(e[None, :], sig, out=sig)  # σ(s_j - s_i)
            c = wb @ sig  # (I,) Σ_i w_i σ_ij
            col = c if col is None else np.add(col, c, out=col)
            grad -= qh.T @ (wb * (sig @ pi))  # Σ_i w_i q_i Σ_j π'_j σ_ij
        col *= pi
        return (
            grad + q.T @ col
        )  # + Σ_j π'_j q_j Σ_i w_i σ_ij (float32: the history block's precision)
