"""Losses for explicit ratings, as small pieces a rating model combines.

The regularized matrix-factorization objective of the recsys course colab (§V)::

    1/|Ω| Σ_(i,j)∈Ω (A_ij − ⟨U_i, V_j⟩)²             observed_mse      (observed entries only)
    (+ λ · 1/|B| Σ_(i,j)∈B (‖U_i‖² + ‖V_j‖²)           row_l2            (Funk-SVD style, per batch B))
    + λ_r · (1/N Σ_i ‖U_i‖² + 1/M Σ_j ‖V_j‖²)         l2_penalty        (N users, M items)
    + λ_g · 1/(MN) Σ_i Σ_j ⟨U_i, V_j⟩²                 gravity           (every pair, observed or not)

``gravity`` never forms the N×M matrix of scores: Σ_ij ⟨U_i,V_j⟩² = Σ_ij (U Uᵀ)… is rewritten as
Σ_kl (UᵀU)_kl · (VᵀV)_kl, two d×d Gram matrices, so it costs O((N + M) d²) time and O(d²) memory.
``RatingLoss`` bundles the three with their coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embrec.errors import InvalidParameterError, check_float


def observed_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the observed entries given (pred and target are (B,))."""
    if pred.shape != target.shape:
        raise InvalidParameterError(f"pred and target must have the same shape; received {tuple(pred.shape)} "
                                    f"and {tuple(target.shape)}.")
    return torch.mean((pred - target) ** 2)


def l2_penalty(*tables: torch.Tensor) -> torch.Tensor:
    """Σ over tables of the mean squared row norm: 1/N Σ_i ‖U_i‖² + 1/M Σ_j ‖V_j‖² + … (the colab's r(U, V))."""
    total = tables[0].new_zeros(())
    for t in tables:
        total = total + t.pow(2).sum() / max(t.shape[0], 1)
    return total


def row_l2(*rows: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of Σ ‖row‖² of the rows a batch touched ((B, d) or (B,) each): the
    frequency-weighted L2 of Funk-SVD-style training (a row is penalised as often as it is rated)."""
    total = rows[0].new_zeros(rows[0].shape[0])  # (B,)
    for r in rows:
        total = total + (r.pow(2).sum(-1) if r.ndim > 1 else r.pow(2))
    return total.mean()


def gravity(user_emb: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
    """1/(MN) Σ_i Σ_j ⟨U_i, V_j⟩² through the d×d Gram matrices, never the N×M score matrix."""
    if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise InvalidParameterError(f"gravity needs (N, d) and (M, d) matrices; received {tuple(user_emb.shape)} "
                                    f"and {tuple(item_emb.shape)}.")
    n, m = user_emb.shape[0], item_emb.shape[0]
    uu = user_emb.T @ user_emb  # (d, d)
    vv = item_emb.T @ item_emb  # (d, d)
    return (uu * vv).sum() / max(n * m, 1)


@dataclass
class RatingLoss:
    """observed MSE + ``l2`` · r(U, V) + ``gravity`` · g(U, V) (the colab's regularized MF loss).

    ``loss(pred, target, user_table, item_table, extra_l2=(bias tables…))`` returns the scalar total;
    ``terms(...)`` the three parts separately (for logging). The tables are the full embedding
    matrices (padding row excluded), as in the colab; the penalties are added at every mini-batch.
    """

    l2: float = 0.0
    gravity: float = 0.0

    def __post_init__(self) -> None:
        check_float("l2", self.l2, low=0.0)
        check_float("gravity", self.gravity, low=0.0)

    def terms(self, pred: torch.Tensor, target: torch.Tensor, user_table: torch.Tensor,
              item_table: torch.Tensor, extra_l2: tuple[torch.Tensor, ...] = ()) -> dict[str, torch.Tensor]:
        out = {"observed": observed_mse(pred, target)}
        zero = pred.new_zeros(())
        out["l2"] = self.l2 * l2_penalty(user_table, item_table, *extra_l2) if self.l2 else zero
        out["gravity"] = self.gravity * gravity(user_table, item_table) if self.gravity else zero
        return out

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, user_table: torch.Tensor,
                 item_table: torch.Tensor, extra_l2: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        t = self.terms(pred, target, user_table, item_table, extra_l2)
        return t["observed"] + t["l2"] + t["gravity"]
