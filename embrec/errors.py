"""Exception and warning types raised by embrec.

Every user-facing problem is one of these, with one sentence that names the parameter, what was
expected and what was received. The CLI prints the message and exits 1; the HTTP service turns it
into a 4xx JSON error.
"""

from __future__ import annotations

from typing import Any


class EmbrecError(Exception):
    """Base class of every error embrec raises on purpose."""


class InvalidParameterError(EmbrecError, ValueError):
    """A parameter has the wrong type or value."""


class DataError(EmbrecError, ValueError):
    """Input data is malformed: missing columns, empty files, NaN ids, unparseable timestamps..."""


class UnknownIdError(EmbrecError, KeyError):
    """A raw user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError quotes its message; we want the plain sentence.
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(EmbrecError, FileNotFoundError):
    """A named dataset could not be found locally nor downloaded."""


class NotFittedError(EmbrecError, RuntimeError):
    """A model (or index) was used before `fit` (or `index`)."""


class ModelFileError(EmbrecError, OSError):
    """A model directory is missing, damaged, or was written by an incompatible version."""


class OutputPathError(EmbrecError, ValueError):
    """An output path (``--out``, ``save(path)``) would destroy something that is not embrec's, or cannot be written."""


class ModelStateError(EmbrecError, ValueError):
    """A model's learned state cannot be saved or used (e.g. non-finite weights after a diverged fit)."""


class ModelVersionWarning(UserWarning):
    """A model directory was written by a newer embrec than this one (same format, so it still loads)."""


class ParameterWarning(UserWarning):
    """A parameter combination works but is probably not what the caller wants."""


def describe(value: Any, limit: int = 60) -> str:
    """Short repr of a received value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return `value` if it is an int >= `minimum`, else raise InvalidParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_np_int(value):
        raise InvalidParameterError(
            f"{name} must be an integer >= {minimum}; received {describe(value)}."
        )
    if int(value) < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}; received {value}.")
    return int(value)


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    """Return `value` as float if it lies in [low, high] (or (low, high] when low_open)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number; received {describe(value)}.") from None
    if x != x:
        raise InvalidParameterError(f"{name} must be a number; received NaN.")
    if low is not None and (x < low or (low_open and x == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise InvalidParameterError(f"{name} must be {bound}; received {value}.")
    if high is not None and x > high:
        raise InvalidParameterError(f"{name} must be <= {high}; received {value}.")
    return x


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`."""
    if value not in choices:
        raise InvalidParameterError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}; received {describe(value)}."
        )
    return value


def _is_np_int(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.integer)
