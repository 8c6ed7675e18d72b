"""Evaluation: metrics (pure functions), splits, and the named protocols with their runner.

    from embrec.evaluation import run_protocol, evaluate_model, PROTOCOLS
    run_protocol("retail-precision", {"popularity": Popularity, "bpr": lambda: BPR(factors=64)})

Protocols (documented in docs/protocols.md): ``retail-precision``, ``retail-next``, ``ml100k-rmse``,
``ml100k-top10``, and for any log ``leave-last-out`` and ``random-holdout``.
"""

from embrec.evaluation.folds import Fold
from embrec.evaluation.metrics import (
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    hits_at_k,
    mae,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
    top_k_accuracy,
    transaction_precision,
)
from embrec.evaluation.runner import (
    PROTOCOLS,
    Protocol,
    evaluate_model,
    get_protocol,
    load_folds,
    protocol_names,
    run_protocol,
)
from embrec.evaluation.splits import (
    leave_last_out,
    official_fold,
    random_split,
    split_by_time,
)

__all__ = [
    "PROTOCOLS",
    "Fold",
    "Protocol",
    "average_precision_at_k",
    "catalogue_coverage",
    "evaluate_model",
    "get_protocol",
    "hit_rate_at_k",
    "hits_at_k",
    "leave_last_out",
    "load_folds",
    "mae",
    "ndcg_at_k",
    "official_fold",
    "precision_at_k",
    "protocol_names",
    "random_split",
    "recall_at_k",
    "rmse",
    "run_protocol",
    "split_by_time",
    "top_k_accuracy",
    "transaction_precision",
]
