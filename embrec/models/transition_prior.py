"""A first-order transition prior inside the sequence models, and the bought-item training mask.

``transition_prior="scalar"`` or ``"item"`` (``SequenceRecommender``) adds to the network's logits a learned
weight times the log of the smoothed first-order transition probability from the sequence's last token::

    logits(b | h, a) = net(h)_b + w_a * log P(b | a)
    P(b | a)         = (C[a, b] + smoothing * P_pop(b)) / (sum_b C[a, b] + smoothing)

``C[a, b]`` counts how often token ``b`` directly follows token ``a`` in the training token sequences
(``a = 0`` is "nothing bought yet", so row 0 holds the first items of transactions), ``P_pop`` is training
popularity. ``w`` is one learned scalar (``"scalar"``) or one learned weight per last token (``"item"``),
initialised to 1, so training starts from the transition model and the network learns the residual. The
counts are computed once in ``fit`` and saved with the model (sparse); ``log P`` is held densely on the
model's device.

Training uses a leave-one-out prior: at a training position the count of its own transition ``a -> target``
is taken out (``C[a, target] - 1``), otherwise a transition seen once would look certain exactly where it is
the answer and ``w`` would learn to over-trust counts that are out of sample at prediction time (the row
total is one less too, so each row stays a distribution).

``transition_prior="mixture"`` mixes in probability space instead (an "or" of the two, where the product
above is an "and"): ``P(b) = g_a * P(b | a) + (1 - g_a) * softmax(net(h))_b`` with a learned gate
``g_a = sigmoid(w_a)`` per last token (``w`` starts at 0, an even mix); the scores are ``log P(b)``. (A gate
that also read the hidden state, ``sigmoid(w_a + v . h)``, measured no better on the retail validation month.)

``mask_bought=True`` leaves the items already bought in the current transaction out of the training softmax
(their logits are -inf) and drops positions whose target is one of them: the ``retail-next`` protocol removes
those items before ranking, so training need not spend capacity ranking them.

Measured on the ``retail-next`` validation month (GRU + user on timelines, 128/256, lr 1e-2, batch 256,
CPU): ``"mixture"`` with dropout 0.4 reached 0.2878 after 3 epochs beside item-transition's 0.2859; the
product forms peaked after 1 epoch and then overfitted (``"item"`` + mask 0.2826, ``"scalar"`` 0.2765);
``mask_bought`` changed the mixture's figure by less than 0.001.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from embrec.data.ragged import Ragged
from embrec.errors import InvalidParameterError

PRIORS = ("none", "scalar", "item", "mixture")
_FLOOR = 1e-8  # smallest probability kept inside the log (item 0 and items never seen)
#: the dense (items x items) log-prior may take at most this many bytes (float32)
MAX_PRIOR_BYTES = 2**31


def transition_counts(tokens: Ragged, n_items: int) -> sp.csr_matrix:
    """(n_items, n_items) counts of ``a -> b`` over consecutive tokens of each row, ``b > 0`` only."""
    vals = tokens.values
    if vals.size < 2:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    same = tokens.row_ids[1:] == tokens.row_ids[:-1]
    src, dst = vals[:-1][same], vals[1:][same]
    keep = dst > 0
    counts = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (src[keep], dst[keep])),
                           shape=(n_items, n_items))
    counts.sum_duplicates()
    return counts


class TransitionPrior:
    """Dense ``log P(b | a)`` (see the module docstring) on a device, with the leave-one-out correction."""

    def __init__(self, counts: sp.csr_matrix, popularity: np.ndarray, smoothing: float,
                 device: torch.device) -> None:
        n = popularity.size
        if 4 * n * n > MAX_PRIOR_BYTES:
            raise InvalidParameterError(
                f"transition_prior needs a dense {n:,} x {n:,} table ({4 * n * n / 2**30:.1f} GiB), more than the "
                f"{MAX_PRIOR_BYTES / 2**30:.0f} GiB allowed; use transition_prior='none' for a catalogue this large.")
        pop = np.asarray(popularity, dtype=np.float64).copy()
        pop[0] = 0.0
        pop = pop / max(pop.sum(), 1.0)
        self.totals = torch.as_tensor(np.asarray(counts.sum(axis=1)).ravel() + smoothing,
                                      dtype=torch.float32, device=device)  # (N,) row total + smoothing
        self.smooth_pop = torch.as_tensor(smoothing * pop, dtype=torch.float32, device=device)  # (N,)
        dense = torch.as_tensor(counts.toarray(), dtype=torch.float32, device=device)  # (N, N)
        dense += self.smooth_pop[None, :]
        dense /= self.totals[:, None]
        self.log_p = dense.clamp_min_(_FLOOR).log_()  # (N, N) log P(b | a)

    def rows(self, last: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """(M, N) ``log P(. | last)``; with ``leave_out`` (M,) targets, each position's own transition
        ``last -> leave_out`` counted once less (training)."""
        out = self.log_p[last]  # (M, N)
        if leave_out is not None:
            at = out.gather(1, leave_out[:, None])[:, 0]  # (M,)
            total = self.totals[last]  # (M,)
            mass = (at.exp() * total - 1.0).clamp_min(self.smooth_pop[leave_out])  # C - 1 + s * P_pop
            fixed = (mass / total).clamp_min(_FLOOR).log()  # (M,)
            out = out.scatter(1, leave_out[:, None], fixed[:, None])
            out = out + (total / (total - 1.0)).log()[:, None]  # the row total one less: a distribution again
        return out


def bought_mask(items: torch.Tensor, positions: torch.Tensor, n_items: int) -> torch.Tensor:
    """(M, N) True at the items bought so far in the current transaction, for each real position.

    ``items`` (B, T) input tokens (0 opens a transaction; right padding is 0 too), ``positions`` (B, T)
    the real training positions, in the order ``hidden[positions]`` reads them. The current input item
    counts as bought; a window that starts inside a transaction sees only the part inside the window."""
    b, t = items.shape
    segment = (items == 0).cumsum(dim=1)  # (B, T) transaction number inside the window
    idx = torch.arange(t, device=items.device)
    same = (segment[:, :, None] == segment[:, None, :]) & (idx[None, None, :] <= idx[None, :, None])  # (B, T, S)
    same &= (items > 0)[:, None, :]
    rows = same[positions]  # (M, S)
    m, s = rows.nonzero(as_tuple=True)
    bought_items = items[:, None, :].expand(b, t, t)[positions][m, s]  # (K,)
    mask = torch.zeros((rows.shape[0], n_items), dtype=torch.bool, device=items.device)
    mask[m, bought_items] = True
    return mask
