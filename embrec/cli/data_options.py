"""The data-source options of every command that reads an interaction log, defined once.

``DataSourceOptions`` is the one definition: each field is an option (its flag, default and help in the
field's metadata). ``@data_source_options`` puts those options into a command's Typer signature in place
of its ``source: DataSourceOptions`` parameter and hands the command one ``DataSourceOptions``, so
``train``, ``evaluate``, ``benchmark`` and ``tune`` offer the same options with the same help and
defaults. ``DataSourceOptions.resolve`` checks that the options make sense together and gives the reader
(``embrec.sources``) one ``FileSource``.

    @data_source_options
    def train(model: str = typer.Argument(...), source: DataSourceOptions = DATA_SOURCE, ...) -> None:
        label, file_source = source.resolve(required=True)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer

from embrec import api
from embrec.errors import InvalidParameterError, check_choice, describe

F = TypeVar("F", bound=Callable[..., Any])

PANEL = "Data source"


def _option(default: Any, flag: str, help: str) -> Any:
    """A dataclass field that is also a Typer option (``flag``), shown under the "Data source" panel."""
    info = typer.Option(default, flag, help=help, rich_help_panel=PANEL)
    return field(default=default, metadata={"option": info, "flag": flag})


@dataclass(frozen=True)
class DataSourceOptions:
    """What a command reads: a named ``dataset``, or a ``data`` file with its column names and the
    attribute files beside it. Field order is the order of the options in ``--help`` and in messages."""

    dataset: str | None = _option(None, "--dataset", "A named dataset (see `embrec datasets`).")
    data: Path | None = _option(
        None, "--data", "An interaction log file: CSV, TSV, Parquet or xlsx."
    )
    user_col: str | None = _option(None, "--user-col", "User id column of --data.")
    item_col: str | None = _option(None, "--item-col", "Item id column of --data.")
    rating_col: str | None = _option(None, "--rating-col", "Rating / quantity column of --data.")
    time_col: str | None = _option(
        None, "--time-col", "Timestamp column of --data (dates or unix seconds)."
    )
    group_col: str | None = _option(
        None, "--group-col", "Transaction / basket id column of --data."
    )
    sep: str | None = _option(
        None,
        "--sep",
        "Column separator of --data (e.g. ';' or tab); default: sniffed from the header line among tab, "
        "';', ',' and '|'.",
    )
    encoding: str | None = _option(
        None,
        "--encoding",
        "Text encoding of --data and the feature files, e.g. cp1252 or latin-1; default: UTF-8.",
    )
    time_format: str | None = _option(
        None,
        "--time-format",
        "strptime format of --time-col, e.g. '%d/%m/%Y %H:%M' (needed when dates could read day-first or "
        "month-first).",
    )
    rating_kind: str = _option(
        "auto",
        "--rating-kind",
        "What --rating-col holds: rating, quantity (rating models are then skipped or refused), or auto "
        "(guessed from its name and values; see docs/protocols.md).",
    )
    item_features: Path | None = _option(
        None,
        "--item-features",
        "Item attribute file (CSV/TSV/Parquet), one row per item; its columns become features (typed "
        "automatically, see --feature-type). Items with features but no event join the catalogue.",
    )
    item_features_key: str | None = _option(
        None, "--item-features-key", "Id column of --item-features (default: the --item-col name)."
    )
    user_features: Path | None = _option(
        None, "--user-features", "User attribute file, one row per user (like --item-features)."
    )
    user_features_key: str | None = _option(
        None, "--user-features-key", "Id column of --user-features (default: the --user-col name)."
    )
    feature_type: list[str] | None = _option(
        None,
        "--feature-type",
        "A feature column's type instead of the guessed one: COL=categorical|multi|numeric|text|ignore "
        "(repeat).",
    )
    multi_sep: str = _option("|", "--multi-sep", "Separator of multi-valued feature cells (A|B|C).")
    item_label_col: str | None = _option(
        None,
        "--item-label-col",
        "Column holding each item's title / description (in --item-features, else in --data): shown beside "
        "ids, saved with the model.",
    )

    def resolve(self, *, required: bool) -> tuple[str | None, api.FileSource | None]:
        """(label, FileSource or None: a named dataset or the protocol's own); InvalidParameterError when
        the options do not make sense together. ``required``: the command needs data given here."""
        if self.item_features_key is not None and self.item_features is None:
            raise InvalidParameterError(
                "--item-features-key names the id column of --item-features, which was not given."
            )
        if self.user_features_key is not None and self.user_features is None:
            raise InvalidParameterError(
                "--user-features-key names the id column of --user-features, which was not given."
            )
        if self.dataset is not None and self.data is not None:
            raise InvalidParameterError("give one of --dataset or --data; received both.")
        check_choice("--rating-kind", self.rating_kind, ("auto", "rating", "quantity"))
        if self.rating_kind != "auto" and (self.data is None or self.rating_col is None):
            raise InvalidParameterError(
                f"--rating-kind {self.rating_kind} describes --rating-col of --data, which was not given "
                "(named datasets declare their own)."
            )
        if self.data is None:
            given = [
                flag
                for flag, _ in self._given()
                if flag not in ("--dataset", "--data", "--rating-kind")
            ]
            if given:
                raise InvalidParameterError(
                    f"{', '.join(given)} describe the columns of --data, which was not given."
                )
            if self.dataset is None and required:
                raise InvalidParameterError(
                    "give the data to train on: --dataset NAME, or --data PATH with --user-col and --item-col."
                )
            return self.dataset, None
        missing = [
            flag
            for flag, v in (("--user-col", self.user_col), ("--item-col", self.item_col))
            if v is None
        ]
        if missing:
            raise InvalidParameterError(
                f"--data needs {' and '.join(missing)} to name its id columns."
            )
        if self.time_format is not None and self.time_col is None:
            raise InvalidParameterError("--time-format describes --time-col, which was not given.")
        named = [(f, v) for f, v in self._given() if f.endswith("-col") and f != "--item-label-col"]
        for j, (flag, col) in enumerate(named):
            first = next((f for f, v in named[:j] if v == col), None)
            if first is not None:
                raise InvalidParameterError(
                    f"{first} and {flag} must name different columns; received {describe(col)} for both."
                )
        if self.feature_type and self.item_features is None and self.user_features is None:
            raise InvalidParameterError(
                "--feature-type describes a column of --item-features or --user-features, which were not given."
            )
        return Path(self.data).name, api.FileSource(
            self.data,
            user_col=str(self.user_col),
            item_col=str(self.item_col),
            rating_col=self.rating_col,
            time_col=self.time_col,
            group_col=self.group_col,
            rating_kind=self.rating_kind,
            sep=self.sep,
            encoding=self.encoding,
            time_format=self.time_format,
            item_features=self.item_features,
            item_features_key=self.item_features_key,
            user_features=self.user_features,
            user_features_key=self.user_features_key,
            feature_types=tuple(self.feature_type) if self.feature_type else None,
            multi_sep=self.multi_sep,
            item_label_col=self.item_label_col,
        )

    def _given(self) -> list[tuple[str, Any]]:
        """(flag, value) of every option given a value other than its default, in field order."""
        return [
            (f.metadata["flag"], getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) not in (None, [], f.default)
        ]


#: the default of a command's ``source: DataSourceOptions`` parameter (replaced by ``data_source_options``)
DATA_SOURCE: Any = None

_FIELDS = dataclasses.fields(DataSourceOptions)
_TYPES = typing.get_type_hints(DataSourceOptions)


def data_source_options(command: F) -> F:
    """Replace ``command``'s parameter annotated ``DataSourceOptions`` by one Typer option per field
    (at its place in the signature); the command is called with those values as one DataSourceOptions."""
    sig = inspect.signature(command, eval_str=True)
    hints = typing.get_type_hints(command)
    mine = [name for name, ann in hints.items() if ann is DataSourceOptions]
    if len(mine) != 1:
        raise TypeError(f"{command.__name__} must take exactly one DataSourceOptions parameter.")
    name = mine[0]
    clash = {f.name for f in _FIELDS} & set(sig.parameters)
    if clash:
        raise TypeError(
            f"{command.__name__} has parameters named like data-source options: {sorted(clash)}."
        )
    added = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=f.metadata["option"],
            annotation=_TYPES[f.name],
        )
        for f in _FIELDS
    ]
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name == name:
            params += added
        else:
            ann = hints.get(p.name, p.annotation)
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=ann))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {f.name: kwargs.pop(f.name, f.default) for f in _FIELDS}
        return command(**kwargs, **{name: DataSourceOptions(**values)})

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    if "return" in hints:
        wrapper.__annotations__["return"] = hints["return"]
    return typing.cast(F, wrapper)
