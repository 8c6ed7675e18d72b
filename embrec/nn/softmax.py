"""Softmax retrieval losses as small objects: the task, not the model, owns these details.

``FullSoftmax``: cross-entropy of each target against every item of the catalogue (the course colab's
``softmax_loss``); exact, and affordable while the catalogue is small (thousands of items)::

    logits = user_vectors @ item_vectors.T           # (B, N)
    FullSoftmax()(logits, example=e, target=t)       # mean of -log softmax(logits[e_k])[t_k]

``SampledSoftmax``: for large catalogues. The candidates are the other positives of the batch
(in-batch negatives) plus optional extra sampled negatives. Popular items show up as in-batch
negatives more often than the uniform softmax assumes, so each candidate's logit is corrected by
subtracting ``log Q(candidate)``, its log sampling probability (Yi et al., 2019: "logQ correction").
A candidate that is the row's own positive item elsewhere in the batch (an "accidental hit") is masked,
and so are the other positives of the same example (``groups``). Temperature divides the logits
first, then logQ is subtracted, as in TensorFlow Recommenders' ``Retrieval`` task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embrec.errors import InvalidParameterError, check_float

_MASKED = -1e9  # finite "minus infinity": keeps gradients free of NaN when a row is fully masked


class FullSoftmax:
    """Softmax cross-entropy over all items.

    ``temperature`` divides the logits (1.0 = none). ``per_example``: every example weighs the same
    (the mean over its targets, then over examples) instead of every (example, target) pair."""

    def __init__(self, *, temperature: float = 1.0, per_example: bool = False) -> None:
        self.temperature = check_float("temperature", temperature, low=0.0, low_open=True)
        self.per_example = bool(per_example)

    def __repr__(self) -> str:
        return f"FullSoftmax(temperature={self.temperature}, per_example={self.per_example})"

    def __call__(self, logits: torch.Tensor, *, example: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over the (T,) pairs of ``-log softmax(logits[example[k]])[target[k]]`` (or of the per-example
        means); logits (B, N)."""
        if example.shape != target.shape or example.dim() != 1:
            raise InvalidParameterError(f"example and target must be 1-D of the same length; received "
                                        f"{tuple(example.shape)} and {tuple(target.shape)}.")
        logp = F.log_softmax(logits / self.temperature, dim=1)  # (B, N)
        nll = -logp[example, target]  # (T,)
        if not self.per_example:
            return nll.mean()
        counts = torch.bincount(example, minlength=logits.shape[0]).to(nll.dtype)  # (B,) targets per example
        return (nll / counts[example]).sum() / (counts > 0).sum()


class SampledSoftmax:
    """In-batch (plus optional sampled) negatives with logQ correction and accidental-hit masking.

    ``logq_correction``: subtract the candidates' log sampling probabilities (needs them at call time).
    ``remove_accidental_hits``: mask candidates whose id equals the row's positive id.
    ``temperature``: divides the logits before the correction."""

    def __init__(self, *, temperature: float = 1.0, logq_correction: bool = True,
                 remove_accidental_hits: bool = True) -> None:
        self.temperature = check_float("temperature", temperature, low=0.0, low_open=True)
        self.logq_correction = bool(logq_correction)
        self.remove_accidental_hits = bool(remove_accidental_hits)

    def __repr__(self) -> str:
        return (f"SampledSoftmax(temperature={self.temperature}, logq_correction={self.logq_correction}, "
                f"remove_accidental_hits={self.remove_accidental_hits})")

    def logits(self, query: torch.Tensor, positive: torch.Tensor, positive_ids: torch.Tensor, *,
               positive_logq: torch.Tensor | None = None, negatives: torch.Tensor | None = None,
               negative_ids: torch.Tensor | None = None, negative_logq: torch.Tensor | None = None,
               groups: torch.Tensor | None = None, offset: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """(T, T + M) corrected and masked logits; the label of row k is column k. ``offset`` (broadcasting
        to (T, T + M)) is added to the dot products before the temperature (e.g. item biases, a per-pair
        repeat term); ``mask`` (T, T + M) bool removes further candidates (never a row's own label)."""
        t = query.shape[0]
        if positive.shape != query.shape or positive_ids.shape != (t,):
            raise InvalidParameterError(f"query and positive must be (T, d) with positive_ids (T,); received "
                                        f"{tuple(query.shape)}, {tuple(positive.shape)}, {tuple(positive_ids.shape)}.")
        cands, ids, logq = positive, positive_ids, positive_logq
        if negatives is not None:
            if negative_ids is None or negative_ids.shape != (negatives.shape[0],):
                raise InvalidParameterError("negatives need negative_ids of shape (M,).")
            cands = torch.cat([positive, negatives])  # (T + M, d)
            ids = torch.cat([positive_ids, negative_ids])  # (T + M,)
            if logq is not None:
                if negative_logq is None:
                    raise InvalidParameterError("with positive_logq, negatives need negative_logq too.")
                logq = torch.cat([positive_logq, negative_logq])  # (T + M,)
        logits = query @ cands.T  # (T, T + M)
        if offset is not None:
            logits = logits + offset
        logits = logits / self.temperature
        if self.logq_correction:
            if logq is None:
                raise InvalidParameterError("logq_correction=True needs the candidates' log sampling "
                                            "probabilities (positive_logq); received None.")
            logits = logits - logq[None, :]  # (T, T + M)
        diag = torch.zeros_like(logits, dtype=torch.bool)
        diag[:, :t] = torch.eye(t, dtype=torch.bool, device=logits.device)
        mask = torch.zeros_like(diag) if mask is None else mask.clone()
        if self.remove_accidental_hits:
            mask |= ids[None, :] == positive_ids[:, None]  # (T, T + M)
        if groups is not None:
            mask[:, :t] |= groups[None, :] == groups[:, None]  # other positives of the same example
        return logits.masked_fill(mask & ~diag, _MASKED)

    def __call__(self, query: torch.Tensor, positive: torch.Tensor, positive_ids: torch.Tensor,
                 **kwargs: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy of each row against its own positive (see ``logits`` for the keywords)."""
        logits = self.logits(query, positive, positive_ids, **kwargs)  # (T, T + M)
        labels = torch.arange(logits.shape[0], device=logits.device)  # (T,)
        return F.cross_entropy(logits, labels)


def grouped_sampled_nll(logits: torch.Tensor, example: torch.Tensor, column_item: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """(T,) sampled-softmax cross-entropy of T targets from one logit row per **example**, not per target.

    ``logits`` (B, C): example b against C candidates, whose first T columns are the targets (target k is
    column k, of example ``example[k]``); ``column_item`` (C,) the candidates' item (any integer key);
    ``mask`` (B, C) candidates an example leaves out (e.g. its history). Target k's softmax runs over its
    own column and every column of its example that is not masked, not one of the example's targets
    and not the same item as the target (an accidental hit) — the rows ``SampledSoftmax.logits`` builds
    with ``groups=example`` and ``remove_accidental_hits``, but at B x C cost instead of T x C: with

        P_b = Σ_c exp(l_bc)             over the columns open to example b
        G_bu = Σ_{c: item c = u} exp(l_bc)   the same sum over one item's columns

    target k of example b, item u, has the denominator exp(l_bk) + P_b - G_bu (shifted by the row's
    maximum, so nothing overflows)."""
    b, t = logits.shape[0], example.shape[0]
    closed = torch.zeros_like(logits, dtype=torch.bool) if mask is None else mask.clone()
    closed[example, torch.arange(t, device=logits.device)] = True  # the example's own targets
    open_logits = logits.masked_fill(closed, -torch.inf)  # (B, C)
    top = open_logits.max(dim=1).values.detach()  # (B,)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # a row with nothing open
    ex = torch.exp(open_logits - top[:, None])  # (B, C), 0 where closed
    _, key = torch.unique(column_item, return_inverse=True)  # (C,) item -> 0..U-1
    per_item = torch.zeros(b, int(key.max()) + 1, dtype=ex.dtype, device=ex.device).index_add(1, key, ex)  # (B, U)
    own = logits[example, torch.arange(t, device=logits.device)]  # (T,)
    row_top = top[example]  # (T,)
    shift = torch.maximum(row_top, own.detach())  # (T,)
    rest = (ex.sum(1)[example] - per_item[example, key[:t]]).clamp_min(0.0)  # (T,) open, other items
    return shift + torch.log(torch.exp(own - shift) + rest * torch.exp(row_top - shift)) - own
