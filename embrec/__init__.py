"""embrec: embedding-based recommendation — data, models, evaluation, retrieval and serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embrec.data import FeatureTable, IdVocab, Interactions, Ragged

__version__ = "0.1.0"


def load(path: str | Path) -> Any:
    """Load a model directory written by ``model.save(path)``."""
    from embrec.models.io import load_model

    return load_model(path)


__all__ = ["FeatureTable", "IdVocab", "Interactions", "Ragged", "__version__", "load"]
