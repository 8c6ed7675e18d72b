"""Datasets: named public datasets, any log file with column names, and a synthetic shop.

    from embrec import datasets
    log = datasets.load("online-retail")              # data_dir, $EMBREC_DATA, the cache, else download
    base, test = datasets.ml100k_fold("u1")
    log = datasets.from_file("orders.csv", user_col="customer", item_col="sku", time_col="ts")
    log = datasets.synthetic(n_interactions=1_000_000, seed=7)
    datasets.available()                              # name, description, license, where found

Each returns an ``embrec.data.Interactions``.
"""

from embrec.datasets.files import from_file
from embrec.datasets.movielens import FOLDS as ML100K_FOLDS
from embrec.datasets.registry import DATASETS, available, get_spec, load, ml100k_fold
from embrec.datasets.resolve import ChecksumMismatchError, DatasetSpec, cache_root
from embrec.datasets.synthetic import SyntheticTruth, synthetic, synthetic_truth

__all__ = [
    "DATASETS",
    "ML100K_FOLDS",
    "ChecksumMismatchError",
    "DatasetSpec",
    "SyntheticTruth",
    "available",
    "cache_root",
    "from_file",
    "get_spec",
    "load",
    "ml100k_fold",
    "synthetic",
    "synthetic_truth",
]
