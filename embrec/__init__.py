"""embrec: embedding-based recommendation — data, models, evaluation, retrieval and serving."""

from embrec.data import FeatureTable, IdVocab, Interactions, Ragged

__version__ = "0.1.0"

__all__ = ["FeatureTable", "IdVocab", "Interactions", "Ragged", "__version__"]
