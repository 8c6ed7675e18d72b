"""Baselines every learned model is reported beside."""

from embrec.baselines.popularity import Popularity

__all__ = ["Popularity"]
