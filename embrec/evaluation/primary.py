"""The metric that ranks models on each protocol (quickstart's pick of the best model, tuning's objective)."""

from __future__ import annotations

#: protocol -> (metric, "max" | "min"): higher is better unless "min"
PRIMARY: dict[str, tuple[str, str]] = {
    "leave-last-out": ("ndcg@10", "max"),
    "random-holdout": ("ndcg@10", "max"),
    "ml100k-top10": ("precision@10", "max"),
    "ml100k-rmse": ("rmse", "min"),
    "retail-precision": ("precision@5", "max"),
    "retail-next": ("top5_accuracy", "max"),
}


def primary(protocol: str) -> tuple[str, str]:
    """(metric, "max" | "min") of ``protocol`` (a protocol not listed: ndcg@10, higher is better)."""
    return PRIMARY.get(protocol, ("ndcg@10", "max"))
