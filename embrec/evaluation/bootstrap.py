"""Bootstrap intervals and the paired bootstrap test, with users as the resampling unit (pure functions).

Every protocol figure is a ratio of per-unit sums, on each fold::

    figure = mean over folds f of  g( sum_u num[f, u] / sum_u den[f, u] )      g = identity, or sqrt (RMSE)

- a per-user mean (hit@10, NDCG@10, precision@10 ...): num = the user's value, den = 1;
- retail ``precision@k``: num = the user's hits over all their transactions, den = k x their transactions;
- retail ``top5_accuracy``: num = hits, den = events; RMSE: num = squared errors, den = ratings, g = sqrt.

A bootstrap replicate draws U units with replacement (the same draw for every fold and metric) and
recomputes the figure; the 95 % interval is the 2.5th and 97.5th percentiles of ``n_boot`` replicates
(percentile bootstrap, seeded). The paired test (``paired_bootstrap``) applies the same draws to two
models scored on the same units and reads the interval of the difference of their figures: the models
differ beyond noise when that interval excludes 0; ``p`` is the two-sided bootstrap p-value
``2 x min(share of replicates with difference <= 0, share >= 0)``.

    scores = unit_scores(keys, {"hit@10": hit}, {"hit@10": np.ones(n)})   # one fold
    bootstrap_intervals([scores])                   # {"hit@10": (0.12, 0.17)}
    paired_bootstrap([a], [b], "hit@10")            # {"diff", "interval", "p", "significant"}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from embrec.errors import DataError, check_positive_int

N_BOOT = 1000
LEVEL = 0.95
_CELLS = 2**22  # replicate draws held at once: (chunk, U) int64 indexes, about 32 MB


@dataclass
class UnitScores:
    """The per-unit sums behind a protocol's figures on one fold: ``units`` (U,) string keys (a user's raw
    id; an anonymous transaction gets its own key), ``num`` / ``den`` (U,) per metric, and the metrics
    reported as the square root of the ratio (``root``, e.g. RMSE)."""

    units: np.ndarray
    num: dict[str, np.ndarray]
    den: dict[str, np.ndarray]
    root: tuple[str, ...] = field(default=())

    @property
    def metrics(self) -> list[str]:
        return list(self.num)

    def figure(self, metric: str) -> float:
        """The fold's figure of ``metric``: g(sum num / sum den)."""
        value = float(self.num[metric].sum() / self.den[metric].sum())
        return float(np.sqrt(value)) if metric in self.root else value

    def values(self, metric: str) -> np.ndarray:
        """(U,) each unit's own value num / den (g applied), e.g. a user's hit@10."""
        with np.errstate(invalid="ignore", divide="ignore"):
            v = self.num[metric] / self.den[metric]
        return np.sqrt(v) if metric in self.root else v


def unit_scores(
    keys: np.ndarray,
    num: Mapping[str, np.ndarray],
    den: Mapping[str, np.ndarray],
    *,
    root: Sequence[str] = (),
) -> UnitScores:
    """UnitScores from per-row ``num`` / ``den`` (one row per list or event) summed by ``keys`` (the unit
    of each row); units are sorted by key."""
    keys = np.asarray(keys).astype(str)
    units, owner = np.unique(keys, return_inverse=True)
    sums = lambda x: np.bincount(
        owner, weights=np.asarray(x, dtype=np.float64), minlength=units.size
    )  # noqa: E731
    if set(num) != set(den):
        raise DataError(
            f"num and den must name the same metrics; received {sorted(num)} and {sorted(den)}."
        )
    return UnitScores(
        units, {m: sums(v) for m, v in num.items()}, {m: sums(den[m]) for m in num}, tuple(root)
    )


def bootstrap_intervals(
    folds: Sequence[UnitScores], *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)}: the percentile bootstrap interval of every metric's figure (mean over folds),
    resampling the union of the folds' units."""
    keys, arrays = _align([folds])
    reps = _replicates(arrays, keys.size, n_boot=n_boot, seed=seed)
    return {m: _quantiles(r[0], level) for m, r in reps.items()}


def paired_bootstrap(
    a: Sequence[UnitScores],
    b: Sequence[UnitScores],
    metric: str,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, object]:
    """Model a minus model b on ``metric``, scored on the same folds and units, under the same draws:
    ``{"metric", "diff", "interval": [low, high], "p", "significant"}`` (significant: the interval
    excludes 0)."""
    if len(a) != len(b):
        raise DataError(
            f"a and b must be scored on the same folds; received {len(a)} and {len(b)} folds."
        )
    keys, arrays = _align([a, b], metrics=[metric])
    reps = _replicates(arrays, keys.size, n_boot=n_boot, seed=seed)[metric]
    diff = reps[0] - reps[1]  # (n_boot,)
    diff = diff[np.isfinite(diff)]
    lo, hi = _quantiles(diff, level)
    observed = float(
        np.mean([f.figure(metric) for f in a]) - np.mean([f.figure(metric) for f in b])
    )
    p = (
        float(min(1.0, 2.0 * min(np.mean(diff <= 0), np.mean(diff >= 0))))
        if diff.size
        else float("nan")
    )
    return {
        "metric": metric,
        "diff": observed,
        "interval": [lo, hi],
        "p": p,
        "significant": bool(lo > 0 or hi < 0),
    }


# helpers ------------------------------------------------------------------------------------------
def _align(
    models: Sequence[Sequence[UnitScores]], metrics: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray, bool]]]:
    """The union of units, and per metric (num, den) arrays (models, folds, U) aligned to it."""
    if not models or not models[0]:
        raise DataError("a bootstrap needs at least one scored fold; received none.")
    keys = np.unique(np.concatenate([f.units for folds in models for f in folds]))
    metrics = list(metrics or models[0][0].metrics)
    out = {}
    for m in metrics:
        n_models, n_folds = len(models), len(models[0])
        num = np.zeros((n_models, n_folds, keys.size))
        den = np.zeros((n_models, n_folds, keys.size))
        for i, folds in enumerate(models):
            for f, s in enumerate(folds):
                if m not in s.num:
                    raise DataError(f"metric {m!r} is not among the scored metrics {s.metrics}.")
                pos = np.searchsorted(keys, s.units)
                num[i, f, pos] = s.num[m]
                den[i, f, pos] = s.den[m]
        out[m] = (num, den, m in models[0][0].root)
    return keys, out


def _replicates(
    arrays: dict[str, tuple[np.ndarray, np.ndarray, bool]], n_units: int, *, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """Per metric (models, n_boot) replicate figures; every metric and model sees the same draws."""
    n_boot = check_positive_int("n_boot", n_boot)
    rng = np.random.default_rng(seed)
    out = {m: np.empty((num.shape[0], n_boot)) for m, (num, _, _) in arrays.items()}
    chunk = max(1, _CELLS // max(n_units, 1))
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n_units, size=(stop - start, n_units))  # (c, U) units drawn
        weights = np.stack([np.bincount(row, minlength=n_units) for row in idx]).astype(
            np.float64
        )  # (c, U)
        for m, (num, den, root) in arrays.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = (num @ weights.T) / (den @ weights.T)  # (models, folds, c)
            if root:
                ratio = np.sqrt(ratio)
            out[m][:, start:stop] = ratio.mean(axis=1)
    return out


def _quantiles(x: np.ndarray, level: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(x, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
