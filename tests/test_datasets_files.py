"""from_file: CSV / TSV / Parquet / xlsx by extension, and one clear sentence for each kind of bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from embrec import Interactions
from embrec.datasets import from_file
from embrec.errors import DataError, DatasetNotFoundError, EmbrecError, InvalidParameterError

FRAME = pd.DataFrame(
    {
        "customer": [7, 7, 3, 9, 3],
        "sku": ["A", "B", "A", "C", "C"],
        "qty": [1, 2, 1, 5, 1],
        "ts": [
            "2024-01-02 10:00",
            "2024-01-02 10:00",
            "2024-01-03 09:30",
            "2024-01-04 12:00",
            "2024-01-05 08:00",
        ],
        "order": ["o1", "o1", "o2", "o3", "o4"],
    }
)
KW = {
    "user_col": "customer",
    "item_col": "sku",
    "rating_col": "qty",
    "time_col": "ts",
    "group_col": "order",
}


def _write(frame: pd.DataFrame, path) -> None:
    name = str(path)
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    elif name.endswith(".csv.gz"):
        with gzip.open(path, "wt") as f:
            frame.to_csv(f, index=False)
    elif name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_excel(path, index=False)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".parquet", ".xlsx"])
def test_every_format_gives_the_same_log(tmp_path, suffix):
    path = tmp_path / f"orders{suffix}"
    _write(FRAME, path)
    log = from_file(path, **KW)
    assert len(log) == 5 and log.name == path.name
    assert log.users.raw_ids.tolist() == [3, 7, 9]  # ints stay ints
    np.testing.assert_array_equal(log.users.decode(log.user), [7, 7, 3, 9, 3])  # row order kept
    np.testing.assert_array_equal(log.items.decode(log.item), ["A", "B", "A", "C", "C"])
    np.testing.assert_array_equal(log.rating, [1, 2, 1, 5, 1])
    np.testing.assert_array_equal(log.group, [0, 0, 1, 2, 3])
    assert log.timestamp[2] == np.datetime64("2024-01-03T09:30")


def test_minimal_columns_and_unix_seconds(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"u": [1, 2], "i": [10, 11], "t": [0, 86400]}).to_csv(path, index=False)
    log = from_file(path, user_col="u", item_col="i", time_col="t")
    assert log.rating is None and log.group is None
    assert log.timestamp[1] == np.datetime64("1970-01-02")


def test_ids_with_leading_zeros_stay_strings(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item\n007,0042\n010,0042\n")
    log = from_file(path, user_col="user", item_col="item")
    assert log.users.raw_ids.tolist() == ["007", "010"] and log.items.raw_ids.tolist() == ["0042"]


def test_missing_users_can_be_the_unknown_user(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item\n5,a\n,b\n6,a\n")
    log = from_file(path, user_col="user", item_col="item", missing_users="unknown")
    np.testing.assert_array_equal(log.user, [1, 0, 2])
    assert log.users.raw_ids.tolist() == [5, 6]


# bad input ----------------------------------------------------------------------------------------
def _csv(tmp_path, text: str):
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def test_misspelled_column_names_the_parameter_and_suggests(tmp_path):
    path = tmp_path / "orders.csv"
    _write(FRAME, path)
    with pytest.raises(DataError) as err:
        from_file(path, user_col="custmer", item_col="sku")
    msg = str(err.value)
    assert (
        "user_col='custmer' is not a column of orders.csv" in msg
        and "did you mean 'customer'?" in msg
    )


def test_missing_optional_column(tmp_path):
    path = tmp_path / "orders.csv"
    _write(FRAME, path)
    with pytest.raises(
        DataError, match=r"time_col='when' is not a column of orders.csv; its columns are"
    ):
        from_file(path, user_col="customer", item_col="sku", time_col="when")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"is empty; expected a header row and at least one row"):
        from_file(_csv(tmp_path, ""), user_col="u", item_col="i")


def test_header_only_file(tmp_path):
    with pytest.raises(DataError, match=r"has no rows \(columns \['u', 'i'\]\)"):
        from_file(_csv(tmp_path, "u,i\n"), user_col="u", item_col="i")


def test_a_repeated_header_name_is_refused_not_renamed(tmp_path):
    # pandas would read "user,user,item" as columns user, user.1, item and train on the wrong one
    with pytest.raises(DataError, match=r"names the column 'user' twice in its header"):
        from_file(
            _csv(tmp_path, "user,user,item\n1,2,a\n3,4,b\n"), user_col="user", item_col="item"
        )


def test_unparseable_timestamps(tmp_path):
    path = _csv(tmp_path, "u,i,t\n1,a,2024-01-01\n2,b,yesterday\n")
    with pytest.raises(DataError) as err:
        from_file(path, user_col="u", item_col="i", time_col="t")
    assert (
        "time column 't' must hold dates or unix seconds; received unparseable value 'yesterday'"
        in str(err.value)
    )


def test_negative_ids(tmp_path):
    with pytest.raises(DataError, match=r"id column 'u' must hold non-negative ids; received -4"):
        from_file(_csv(tmp_path, "u,i\n1,a\n-4,b\n"), user_col="u", item_col="i")


def test_list_valued_ids_are_refused_not_turned_into_text(tmp_path):
    path = tmp_path / "lists.parquet"
    pd.DataFrame({"u": [[1, 2], [3]], "i": ["a", "b"]}).to_parquet(path)
    with pytest.raises(
        DataError,
        match=r"id column 'u' must hold one id per row .* received a list such as \[1, 2\]",
    ):
        from_file(path, user_col="u", item_col="i")
    mixed = pd.DataFrame(
        {"u": ["x", 7], "i": ["a", "b"]}
    )  # text and numbers in one column: still ids
    log = Interactions.from_frame(mixed, user_col="u", item_col="i")
    assert sorted(log.users.raw_ids) == ["7", "x"]


def test_nan_user_ids(tmp_path):
    with pytest.raises(
        DataError, match=r"user column 'u' has 1 missing ids; expected an id on every row"
    ):
        from_file(_csv(tmp_path, "u,i\n1,a\n,b\n"), user_col="u", item_col="i")


def test_nan_item_ids(tmp_path):
    with pytest.raises(DataError, match=r"item column 'i' has 1 missing ids"):
        from_file(_csv(tmp_path, "u,i\n1,a\n2,\n"), user_col="u", item_col="i")


def test_duplicate_rows_error_drop_keep(tmp_path):
    path = _csv(tmp_path, "u,i,t\n1,a,5\n2,b,6\n1,a,5\n1,a,7\n")
    with pytest.raises(DataError) as err:
        from_file(path, user_col="u", item_col="i", time_col="t", duplicates="error")
    assert (
        "must not hold duplicate rows (duplicates='error'); received 1 duplicates, the first at row 3"
        in str(err.value)
    )
    assert len(from_file(path, user_col="u", item_col="i", time_col="t", duplicates="drop")) == 3
    assert (
        len(from_file(path, user_col="u", item_col="i", time_col="t")) == 4
    )  # keep is the default
    # duplicates are judged on the columns used: without the time, rows 1, 3 and 4 are the same event
    assert len(from_file(path, user_col="u", item_col="i", duplicates="drop")) == 2


def test_bad_duplicates_value(tmp_path):
    with pytest.raises(
        InvalidParameterError,
        match=r"duplicates must be one of 'error', 'drop', 'keep'; received 'ignore'",
    ):
        from_file(_csv(tmp_path, "u,i\n1,a\n"), user_col="u", item_col="i", duplicates="ignore")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "log.json"
    path.write_text("[]")
    with pytest.raises(
        DataError,
        match=r"path must end with one of .csv, .csv.gz, .tsv, .parquet, .pq, .xlsx; received 'log.json'",
    ):
        from_file(path, user_col="u", item_col="i")


def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"does not exist or is not a file") as err:
        from_file(tmp_path / "nope.csv", user_col="u", item_col="i")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, EmbrecError)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"could not be read as .parquet"):
        from_file(path, user_col="u", item_col="i")


def test_large_integer_ids_stay_exact_next_to_missing_users(tmp_path):
    path = _csv(tmp_path, "user,item\n9007199254740993,a\n,b\n")
    log = from_file(path, user_col="user", item_col="item", missing_users="unknown")
    assert log.users.raw_ids.tolist() == [9007199254740993]  # 2**53 + 1: a float would round it
    np.testing.assert_array_equal(log.user, [1, 0])


def test_corrupt_xlsx(tmp_path):
    path = tmp_path / "log.xlsx"
    path.write_bytes(b"PK not really a workbook")
    with pytest.raises(DataError, match=r"could not be read as .xlsx"):
        from_file(path, user_col="u", item_col="i")
