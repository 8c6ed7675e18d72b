"""Hyper-parameter values from text (``--param key=value``), typed by the model constructor's annotations.

    coerce("factors", "64", int)                        # 64
    coerce("hidden", "256,128", Sequence[int])          # (256, 128); "[256, 128]" and "(256,128)" too
    coerce("patience", "none", int | None)              # None
    coerce("seed", "abc", int)                          # InvalidParameterError: seed must be an integer ...

Text is read as JSON-ish (``64``, ``0.01``, ``true``, ``none``), then checked against the annotation: an
``int`` takes no booleans nor fractions, a ``float`` takes ints, a ``bool`` only true/false, a ``str`` keeps the
text as written, a sequence takes ``a,b`` or ``[a, b]``. An ``int`` must fit in int64 (what numpy and torch hold);
narrower ranges (``epochs >= 1``) are the model's own checks. An annotation this module does not know lets the value
through to the model's own checks. Values given from Python (not text) are checked the same way.
"""

from __future__ import annotations

import collections.abc
import json
import math
import types
import typing
from typing import Any

import numpy as np

from embrec.errors import InvalidParameterError, describe

_NOTHING = object()
#: what an int parameter may hold: the models keep counts and seeds as int64
_INT64 = (-(2**63), 2**63 - 1)


class _OutOfRange(InvalidParameterError):
    """An integer of the right type but past int64: said as it is, not as "must be an integer or none"."""


def constructor_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of ``cls.__init__`` ({} where they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # a forward reference we cannot resolve: leave checking to the model
        return {}


def coerce(key: str, value: Any, annotation: Any = _NOTHING, default: Any = None) -> Any:
    """``value`` (text or a Python value) as the type ``annotation`` asks for; InvalidParameterError if not."""
    text = value if isinstance(value, str) else None
    if annotation is _NOTHING or annotation is None:
        return _legacy(key, value, default)
    out = _convert(key, value, text, annotation)
    return _legacy(key, value, default) if out is _NOTHING else out


def literal(text: str) -> Any:
    """``"64"`` -> 64, ``"true"`` -> True, ``"none"`` -> None, ``"[1, 2]"`` -> [1, 2]; other text stays text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


# -------------------------------------------------------------------------------------------------
def _convert(key: str, value: Any, text: str | None, ann: Any) -> Any:
    """The converted value, or _NOTHING when ``ann`` is not a type this module checks."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(ann)
        parsed = literal(text) if text is not None else value
        if parsed is None and type(None) in options:
            return None
        for opt in (o for o in options if o is not type(None)):
            try:
                out = _convert(key, value, text, opt)
            except _OutOfRange:
                raise
            except InvalidParameterError:
                continue
            if out is not _NOTHING:
                return out
            return _NOTHING
        raise InvalidParameterError(
            f"{key} must be {_expected(ann)}; received {describe(_shown(value))}."
        )
    if origin is typing.Literal:
        choices = typing.get_args(ann)
        parsed = literal(text) if text is not None else value
        for c in choices:
            if parsed == c or (text is not None and text.strip() == str(c)):
                return c
        raise InvalidParameterError(
            f"{key} must be one of {', '.join(repr(c) for c in choices)}; "
            f"received {describe(_shown(value))}."
        )
    if ann is str:
        if text is not None:
            return text.strip()
        if isinstance(value, str):
            return value
        raise InvalidParameterError(f"{key} must be a string; received {describe(value)}.")
    if ann is bool:
        parsed = literal(text) if text is not None else value
        if isinstance(parsed, (bool, np.bool_)):
            return bool(parsed)
        raise InvalidParameterError(
            f"{key} must be true or false; received {describe(_shown(value))}."
        )
    if ann is int:
        parsed = literal(text) if text is not None else value
        if isinstance(parsed, (int, np.integer)) and not isinstance(parsed, (bool, np.bool_)):
            if not _INT64[0] <= int(parsed) <= _INT64[1]:
                raise _OutOfRange(
                    f"{key} must be an integer from {_INT64[0]} to {_INT64[1]} (64 bits); "
                    f"received {describe(_shown(value))}."
                )
            return int(parsed)
        if (
            isinstance(parsed, float)
            and parsed.is_integer()
            and abs(parsed) < 2**53
            and text is None
        ):
            return int(parsed)
        raise InvalidParameterError(
            f"{key} must be an integer; received {describe(_shown(value))}."
        )
    if ann is float:
        parsed = literal(text) if text is not None else value
        if (
            text is not None
            and isinstance(parsed, str)
            and parsed.strip().lower() in ("nan", "inf", "-inf")
        ):
            parsed = float(parsed)
        if isinstance(parsed, (int, float, np.integer, np.floating)) and not isinstance(
            parsed, (bool, np.bool_)
        ):
            x = float(parsed)
            if math.isnan(x):
                raise InvalidParameterError(f"{key} must be a number; received NaN.")
            return x
        raise InvalidParameterError(f"{key} must be a number; received {describe(_shown(value))}.")
    if origin in (tuple, list, collections.abc.Sequence):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis] or [Any]
        inner = args[0]
        parts = _sequence(key, value, text)
        items = [_item(key, p, inner) for p in parts]
        return tuple(items) if origin in (tuple, collections.abc.Sequence) else items
    return _NOTHING


def _item(key: str, part: Any, inner: Any) -> Any:
    if inner is Any:
        return literal(part) if isinstance(part, str) else part
    out = _convert(key, part, part if isinstance(part, str) else None, inner)
    return part if out is _NOTHING else out


def _sequence(key: str, value: Any, text: str | None) -> list[Any]:
    """ "256,128", "[256, 128]", "(256,128)", "256" -> parts; a Python list or tuple as it is."""
    if text is None:
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]
    body = text.strip()
    if body.startswith("[") or body.startswith("("):
        close = "]" if body[0] == "[" else ")"
        if not body.endswith(close):
            raise InvalidParameterError(
                f"{key} must be a list such as 256,128 or [256,128]; received {describe(text)}."
            )
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")]
    if parts == [""]:
        return []
    if any(not p for p in parts):
        raise InvalidParameterError(
            f"{key} must be a list such as 256,128 or [256,128]; received {describe(text)}."
        )
    return [p.strip("'\"") for p in parts]


def _expected(ann: Any) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        type(None): "none",
    }
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(ann))
    if origin in (tuple, list, collections.abc.Sequence):
        return "a list such as 256,128 or [256,128]"
    return names.get(ann, getattr(ann, "__name__", str(ann)))


def _shown(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _legacy(key: str, value: Any, default: Any) -> Any:
    """No annotation: read text as JSON-ish, shaped like the default (the behaviour before annotations)."""
    if isinstance(value, str):
        if isinstance(default, (tuple, list)):
            return type(default)(literal(p) for p in _sequence(key, value, value))
        value = literal(value)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise InvalidParameterError(f"{key} must be true or false; received {describe(value)}.")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
