"""Baselines every learned model is reported beside."""

from embrec.baselines.bias import RatingBias
from embrec.baselines.ease import EASE
from embrec.baselines.item_knn import ItemKNN
from embrec.baselines.popularity import Popularity
from embrec.baselines.repeat import RepeatFrequency
from embrec.baselines.transition import ItemTransition

__all__ = ["EASE", "ItemKNN", "ItemTransition", "Popularity", "RatingBias", "RepeatFrequency"]
