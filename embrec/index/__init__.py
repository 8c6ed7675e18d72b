"""Top-k retrieval indexes: exact (blocked) and approximate (FAISS), one interface."""

from embrec.index.exact import MEASURES, ExactIndex, normalize_rows

__all__ = ["MEASURES", "ExactIndex", "normalize_rows"]
