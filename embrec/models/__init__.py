"""Models: the base classes, the registry, the training loop and model files."""

from embrec.models.base import EmbeddingModel, Recommendations, Recommender
from embrec.models.io import load_model, save_model
from embrec.models.registry import create, model_names

__all__ = ["EmbeddingModel", "Recommendations", "Recommender", "create", "load_model", "model_names", "save_model"]
