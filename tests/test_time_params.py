"""Time columns read one way or refused with two examples; --param values typed by the constructor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from embrec import api
from embrec.data import Interactions
from embrec.data.timeparse import parse_times
from embrec.datasets import from_file
from embrec.errors import DataError, InvalidParameterError
from embrec.params import coerce


def days(series: pd.Series) -> list[str]:
    return [str(t)[:16] for t in series]


@pytest.mark.parametrize(
    "values, want",
    [
        (["2021-01-02", "2021-03-04 10:00"], ["2021-01-02 00:00", "2021-03-04 10:00"]),
        (
            ["13/02/2021", "14/03/2021"],
            ["2021-02-13 00:00", "2021-03-14 00:00"],
        ),  # day-first, no doubt
        (
            ["02/13/2021", "03/14/2021 08:30"],
            ["2021-02-13 00:00", "2021-03-14 08:30"],
        ),  # month-first, no doubt
        (["01/01/2021", "13.01.2021"], None),  # two separators: mixed
        (
            ["2021-01-02T10:00:00+01:00", "2021-01-02T10:00:00+05:00", "2021-01-02T10:00:00Z"],
            ["2021-01-02 09:00", "2021-01-02 05:00", "2021-01-02 10:00"],
        ),  # to UTC
        (["2021-01-02 10:00:00-0800"], ["2021-01-02 18:00"]),
        (["Jan 5 2021", "Feb 7 2021", None], ["2021-01-05 00:00", "2021-02-07 00:00", "NaT"]),
    ],
)
def test_one_reading_per_column(values, want):
    col = pd.Series(values, dtype=object)
    if want is None:
        with pytest.raises(DataError, match="mixes date formats"):
            parse_times(col, "ts")
        return
    assert days(parse_times(col, "ts")) == want


@pytest.mark.parametrize(
    "values, says",
    [
        (
            ["01/02/2021", "13/02/2021"],
            "time column 'ts' has dates that read day-first or month-first ('01/02/2021') "
            "beside dates that read only day-first ('13/02/2021'); pass time_format='%d/%m/%Y'",
        ),
        (["13/02/2021 10:00", "01/02/2021 11:00"], "pass time_format='%d/%m/%Y %H:%M'"),
        (
            ["01/02/2021", "02/03/2021"],
            "read either day-first or month-first ('01/02/2021' and '02/03/2021'); pass "
            "time_format='%d/%m/%Y' or '%m/%d/%Y'",
        ),
        (
            ["13/01/2021", "01/13/2021"],
            "mixes day-first and month-first dates: '13/01/2021' reads only day-first, "
            "'01/13/2021' only month-first",
        ),
        (["2021-01-02", "Jan 5 2021"], "mixes date formats: '2021-01-02' and 'Jan 5 2021'"),
        (
            ["2021-01-02T10:00:00+01:00", "2021-01-02T11:00:00"],
            "mixes times with a UTC offset "
            "('2021-01-02T10:00:00+01:00') and without ('2021-01-02T11:00:00')",
        ),
        (["2021-01-02", "yesterday"], "received unparseable value 'yesterday'"),
    ],
)
def test_ambiguous_or_mixed_columns_are_refused(values, says):
    with pytest.raises(DataError) as err:
        parse_times(pd.Series(values), "ts")
    assert says in str(err.value), str(err.value)


def test_time_format_reads_every_value_that_way():
    col = pd.Series(["01/02/2021", "13/02/2021"])
    assert days(parse_times(col, "ts", time_format="%d/%m/%Y")) == [
        "2021-02-01 00:00",
        "2021-02-13 00:00",
    ]
    with pytest.raises(DataError, match=r"do not match time_format='%m/%d/%Y', e.g. '13/02/2021'"):
        parse_times(col, "ts", time_format="%m/%d/%Y")


def test_mixed_offsets_log_a_note(caplog):
    with caplog.at_level("WARNING"):
        parse_times(pd.Series(["2021-01-02T10:00:00+01:00", "2021-01-02T10:00:00+05:00"]), "ts")
    assert "mixes UTC offsets (+01:00, +05:00); every time is converted to UTC" in caplog.text


def test_from_file_time_format_and_distinct_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,ts\nu1,a,01/02/2021\nu2,b,13/02/2021\nu1,b,02/03/2021\n")
    with pytest.raises(
        DataError, match="time column 'ts' has dates that read day-first or month-first"
    ):
        from_file(path, user_col="user", item_col="item", time_col="ts")
    log = from_file(path, user_col="user", item_col="item", time_col="ts", time_format="%d/%m/%Y")
    assert [str(t)[:10] for t in log.timestamp] == ["2021-02-01", "2021-02-13", "2021-03-02"]
    for kw in (
        {"item_col": "user"},
        {"item_col": "item", "time_col": "user"},
        {"item_col": "item", "rating_col": "item"},
    ):
        with pytest.raises(
            DataError, match="must name different columns; received 'user' for both|'item' for"
        ):
            from_file(path, user_col="user", **kw)
    frame = pd.DataFrame({"u": [1, 2], "i": [3, 4]})
    with pytest.raises(
        DataError, match="^user_col and item_col must name different columns; received 'u'"
    ):
        Interactions.from_frame(frame, user_col="u", item_col="u")


def test_unix_seconds_beyond_int64_are_refused(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,ts\nu1,a,1609459200\nu2,b,99999999999999999999\n")
    with pytest.raises(DataError, match=r"unparseable value 1e\+20"):
        from_file(path, user_col="user", item_col="item", time_col="ts")


@pytest.mark.parametrize(
    "text, ann, want",
    [
        ("64", int, 64),
        ("0.5", float, 0.5),
        ("1", float, 1.0),
        ("true", bool, True),
        ("cpu", str, "cpu"),
        ("5", str, "5"),
        ("none", int | None, None),
        ("3", int | None, 3),
        ("256,128", Sequence[int], (256, 128)),
        ("[256, 128]", Sequence[int], (256, 128)),
        ("(64)", Sequence[int], (64,)),
        ("64", Sequence[int], (64,)),
        ("a,b", Sequence[str] | None, ("a", "b")),
        ("auto", float | str, "auto"),
        ("0.1", float | str, 0.1),
    ],
)
def test_param_text_is_typed_by_the_annotation(text, ann, want):
    got = coerce("p", text, ann)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    "text, ann, says",
    [
        ("abc", int, "p must be an integer; received 'abc'"),
        ("1.5", int, "must be an integer"),
        ("true", int, "must be an integer; received 'true'"),
        ("", int, "received ''"),
        ("abc", float, "p must be a number; received 'abc'"),
        ("nan", float, "received NaN"),
        ("1", bool, "p must be true or false; received '1'"),
        ("[256,128", Sequence[int], "must be a list such as"),
        ("256,,128", Sequence[int], "must be a list"),
        ("256,x", Sequence[int], "p must be an integer; received 'x'"),
        ("abc", int | None, "p must be an integer or none; received 'abc'"),
    ],
)
def test_param_text_of_the_wrong_type_is_refused(text, ann, says):
    with pytest.raises(InvalidParameterError) as err:
        coerce("p", text, ann)
    assert says in str(err.value)


def test_model_params_checks_every_model_constructor():
    assert api.model_params("bpr", ["seed=7", "lr=1", "patience=none"]) == {
        "seed": 7,
        "lr": 1.0,
        "patience": None,
    }
    assert api.model_params("softmax-dnn", ["hidden=[256,128]"])["hidden"] == (256, 128)
    assert api.model_params("softmax-dnn", ["hidden=256,128"])["hidden"] == (256, 128)
    with pytest.raises(InvalidParameterError, match="^seed must be an integer; received 'abc'.$"):
        api.model_params("bpr", ["seed=abc"])
    with pytest.raises(InvalidParameterError, match="^seed must be an integer"):
        api.model_params("bpr", {"seed": True})
    assert np.isclose(api.model_params("bpr", {"lr": 1})["lr"], 1.0)
