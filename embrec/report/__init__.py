"""Inspection of a model's embeddings: PNG figures and one HTML page (``write_report``)."""

from embrec.report.page import item_colours, item_features, item_labels, write_report

__all__ = ["item_colours", "item_features", "item_labels", "write_report"]
