"""Where a command's data, hyper-parameters and protocol options come from: plain arguments in, checked
values out. ``embrec.api`` (and through it the CLI, the service and the tuner) sits above this module.

    load_data(dataset="ml-100k")                                       # a named dataset
    load_data(data=FileSource("log.csv", user_col="u", item_col="i"))  # a user's file
    model_params("bpr", ["factors=64", "lr=0.01"])                     # checked against the constructor
    protocol_options(["k=20", "part=test"])
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from embrec.errors import InvalidParameterError
from embrec.models.io import to_plain

if TYPE_CHECKING:
    from embrec.data import Interactions


# data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileSource:
    """An interaction log given as a file and its column names (``--data PATH --user-col ...``)."""

    path: str | Path
    user_col: str
    item_col: str
    rating_col: str | None = None
    time_col: str | None = None
    group_col: str | None = None
    rating_kind: str = "auto"
    sep: str | None = None
    item_features: str | Path | None = None
    item_features_key: str | None = None
    user_features: str | Path | None = None
    user_features_key: str | None = None
    feature_types: tuple[str, ...] | Mapping[str, str] | None = None
    multi_sep: str = "|"
    item_label_col: str | None = None
    time_format: str | None = None
    encoding: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name

    def load(self) -> Interactions:
        from embrec.datasets import from_file

        return from_file(
            self.path,
            user_col=self.user_col,
            item_col=self.item_col,
            rating_col=self.rating_col,
            time_col=self.time_col,
            group_col=self.group_col,
            rating_kind=self.rating_kind,
            sep=self.sep,
            item_features=self.item_features,
            item_features_key=self.item_features_key,
            user_features=self.user_features,
            user_features_key=self.user_features_key,
            feature_types=self.feature_types,
            multi_sep=self.multi_sep,
            item_label_col=self.item_label_col,
            time_format=self.time_format,
            encoding=self.encoding,
        )


Data = Union[FileSource, "Interactions"]


def list_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every named dataset: name, description, licence, url, where it was found (path) and whether it
    loads without a download (available)."""
    from embrec.datasets import available

    return to_plain(available(data_dir))


def load_data(
    *, dataset: str | None = None, data: Data | None = None, data_dir: str | Path | None = None
) -> Interactions:
    """The interactions of a named ``dataset`` or of ``data`` (a FileSource or an Interactions)."""
    from embrec.data import Interactions

    if (dataset is None) == (data is None):
        raise InvalidParameterError(
            "give exactly one of dataset (a name) or data (a file with column names); "
            f"received {'both' if dataset is not None else 'neither'}."
        )
    if dataset is not None:
        from embrec import datasets

        if dataset not in datasets.DATASETS:
            raise InvalidParameterError(
                f"dataset must be one of {', '.join(repr(d) for d in datasets.DATASETS)}; "
                f"received {dataset!r}."
            )
        return datasets.load(dataset, data_dir=data_dir)
    if isinstance(data, FileSource):
        return data.load()
    if isinstance(data, Interactions):
        return data
    raise InvalidParameterError(
        f"data must be a FileSource or an Interactions; received {type(data).__name__}."
    )


def data_label(dataset: str | None, data: Data | None) -> str:
    if dataset is not None:
        return dataset
    return data.name if isinstance(data, FileSource) else (getattr(data, "name", "") or "data")


# hyper-parameters ------------------------------------------------------------------------------
def model_params(
    model: str, params: Mapping[str, Any] | Sequence[str] | None = None
) -> dict[str, Any]:
    """Hyper-parameters for registry model ``model``, checked against its constructor's signature.

    ``params`` is a mapping or ``["key=value", ...]`` strings (from ``--param``); each value is converted
    to and checked against the constructor's annotation (``embrec.params``: ``64``, ``0.01``, ``true``,
    ``none``, ``256,128`` or ``[256,128]`` for a list). Unknown keys are an error naming the valid ones;
    ranges are checked by the model itself when it is built.
    """
    from embrec.models.registry import model_class
    from embrec.params import coerce, constructor_hints

    cls = model_class(model)
    hints = constructor_hints(cls)
    sig = inspect.signature(cls.__init__)
    known = {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    pairs = _pairs(params)
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if key not in known:
            valid = ", ".join(known) or "none (it takes no hyper-parameters)"
            raise InvalidParameterError(
                f"model {model!r} has no hyper-parameter {key!r}; valid ones: {valid}."
            )
        default = known[key].default
        out[key] = coerce(
            key, value, hints.get(key), None if default is inspect.Parameter.empty else default
        )
    return out


def _pairs(params: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    out: dict[str, Any] = {}
    for item in params:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError(
                f"a hyper-parameter must be written key=value; received {item!r}."
            )
        out[key.strip()] = value.strip()
    return out


def _literal(text: str) -> Any:
    from embrec.params import literal

    return literal(text)


def input_paths(dataset: str | None, data: Data | None, data_dir: str | Path | None) -> list[Path]:
    """The files and folders a command reads its data from (an output path must not hold any of them):
    the ``data`` file, or the folders where a named dataset (every one, when none is named) would be found."""
    if isinstance(data, FileSource):
        return [Path(data.path)]
    if data is not None:
        return []
    from embrec.datasets import DATASETS
    from embrec.datasets.resolve import search_roots

    names = [dataset] if dataset is not None else list(DATASETS)
    return [root / name for root in search_roots(data_dir) for name in names]


def protocol_options(options: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """A protocol's own options from a mapping or ``["key=value", ...]`` (``a,b`` becomes a list); the
    protocol checks the names (an unknown one lists its options)."""
    out = {}
    for key, value in _pairs(options).items():
        if isinstance(value, str) and "," in value:
            value = [_literal(v.strip()) for v in value.split(",") if v.strip()]
        elif isinstance(value, str):
            value = _literal(value)
        out[key] = value
    return out


def protocol_data(dataset: str | None, data: Data | None) -> dict[str, Any]:
    """``dataset=`` / ``data=`` for the protocol runner (none: the protocol's own dataset)."""
    if data is not None:
        return {"data": data.load() if isinstance(data, FileSource) else data}
    return {"dataset": dataset} if dataset is not None else {}
