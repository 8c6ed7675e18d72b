"""Typed hyper-parameter search spaces, declared next to each model class (``search_space``).

    class ALS(EmbeddingModel):
        search_space = {"factors": IntRange(16, 256, log=True),
                        "regularization": FloatRange(1e-3, 10.0, log=True),
                        "confidence": Choice(("count", "binary", "log"))}

``embrec tune`` (``embrec.tuning``) turns each entry into an Optuna suggestion of the same name: a
log-scaled range where the parameter acts multiplicatively (learning rates, regularization, sizes).
Keys must be keyword arguments of the class's ``__init__``; a model without a space cannot be tuned.
Nothing here imports Optuna, so declaring a space costs nothing at import time.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from embrec.errors import InvalidParameterError


@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high], sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise InvalidParameterError(
                f"FloatRange needs low < high (and low > 0 when log); received "
                f"{self.low}, {self.high}."
            )


@dataclass(frozen=True)
class IntRange:
    """An int in [low, high] (inclusive), sampled on a log scale when ``log``."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise InvalidParameterError(
                f"IntRange needs low < high (and low > 0 when log); received "
                f"{self.low}, {self.high}."
            )


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (any values: strings, numbers, tuples of layer sizes...)."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise InvalidParameterError(
                f"Choice needs at least two options; received {self.options!r}."
            )

    def labels(self) -> list[str]:
        """Printable labels, one per option (Optuna stores categorical values as plain labels)."""
        return [label_of(o) for o in self.options]

    def value_of(self, label: str) -> Any:
        return dict(zip(self.labels(), self.options))[label]


Param = FloatRange | IntRange | Choice


def label_of(value: Any) -> str:
    """ "64,32" for (64, 32), "none" for None, str() otherwise."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def search_space_of(cls: type, name: str) -> dict[str, Param]:
    """The declared space of model class ``cls`` (registry name ``name``), checked against ``__init__``."""
    space = getattr(cls, "search_space", None) or {}
    if not space:
        raise InvalidParameterError(
            f"model {name!r} has no hyper-parameters to tune (no search_space); "
            "tune a learned model, e.g. als, bpr, ease or rnn."
        )
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in space if k not in params]
    if unknown:
        raise InvalidParameterError(
            f"{cls.__name__}.search_space names {', '.join(unknown)}, which "
            f"{cls.__name__}.__init__ does not take."
        )
    return dict(space)
