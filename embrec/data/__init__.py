"""Data layer: vocabularies, ragged sequences, feature tables and interaction logs."""

from embrec.data.features import FeatureTable
from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.data.vocab import PAD, IdVocab

__all__ = ["PAD", "FeatureTable", "IdVocab", "Interactions", "Ragged"]
