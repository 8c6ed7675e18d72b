"""Baselines every learned model is reported beside."""

from embrec.baselines.bias import RatingBias
from embrec.baselines.popularity import Popularity
from embrec.baselines.repeat import RepeatFrequency
from embrec.baselines.transition import ItemTransition

__all__ = ["ItemTransition", "Popularity", "RatingBias", "RepeatFrequency"]
