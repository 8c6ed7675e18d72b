"""Explicit registry: model name -> class. No module scanning; add a line when adding a model."""

from __future__ import annotations

from functools import cache
from typing import Any

from embrec.errors import InvalidParameterError, ModelFileError, describe


@cache
def _models() -> dict[str, type]:
    # built once, on first use (a served request asks for a model's name); imported here so that `import embrec` stays light and there are no import cycles
    from embrec.baselines import (
        EASE,
        ItemKNN,
        ItemTransition,
        Popularity,
        RatingBias,
        RepeatFrequency,
    )
    from embrec.models.als import ALS
    from embrec.models.bpr import BPR
    from embrec.models.explicit_mf import ExplicitMF
    from embrec.models.implicit_mf import ImplicitMF
    from embrec.models.rating_dnn import RatingDNN
    from embrec.models.repeat_blend import RepeatBlend
    from embrec.models.rnn import RNNRecommender
    from embrec.models.sasrec import SASRec
    from embrec.models.softmax_dnn import SoftmaxDNN
    from embrec.models.transition_blend import TransitionBlend
    from embrec.models.two_tower import TwoTower

    models: dict[str, type] = {
        "popularity": Popularity,
        "repeat-frequency": RepeatFrequency,
        "item-transition": ItemTransition,
        "rating-bias": RatingBias,
        "ease": EASE,
        "item-knn": ItemKNN,
        "als": ALS,
        "bpr": BPR,
        "explicit-mf": ExplicitMF,
        "implicit-mf": ImplicitMF,
        "rating-dnn": RatingDNN,
        "repeat-blend": RepeatBlend,
        "rnn": RNNRecommender,
        "sasrec": SASRec,
        "softmax-dnn": SoftmaxDNN,
        "two-tower": TwoTower,
        "transition-blend": TransitionBlend,
    }
    return models


def model_names() -> list[str]:
    return list(_models())


def create(name: str, **params: Any) -> Any:
    """Instantiate a model by registry name with hyper-parameters."""
    return model_class(name)(**params)


def model_class(name: str) -> type:
    """The class registered under ``name``; an unknown name lists the known ones."""
    models = _models()
    if name not in models:
        raise InvalidParameterError(f"model must be one of {', '.join(models)}; received {name!r}.")
    return models[name]


def name_of(cls: type) -> str:
    for name, c in _models().items():
        if c is cls:
            return name
    raise InvalidParameterError(
        f"model class {cls.__name__} is not registered in embrec.models.registry."
    )


def class_of(name: Any) -> type:
    models = _models()
    if not isinstance(name, str) or name not in models:
        raise ModelFileError(
            f"config.json names model class {describe(name)}, which this embrec does not know "
            f"(known: {', '.join(models)})."
        )
    return models[name]
