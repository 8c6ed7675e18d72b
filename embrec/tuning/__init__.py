"""Hyper-parameter tuning (``embrec tune``): Optuna on validation parts carved from training data only."""

from embrec.tuning.study import search, suggest, tune
from embrec.tuning.validation import validation_fold

__all__ = ["search", "suggest", "tune", "validation_fold"]
