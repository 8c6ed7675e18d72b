"""Top-k retrieval indexes: exact (blocked) and approximate (FAISS), one interface."""

from embrec.index.auto import ANN_THRESHOLD, BACKENDS, build_index
from embrec.index.exact import MEASURES, ExactIndex, normalize_rows
from embrec.index.faiss_index import FaissIndex

__all__ = ["ANN_THRESHOLD", "BACKENDS", "MEASURES", "ExactIndex", "FaissIndex", "build_index", "normalize_rows"]
