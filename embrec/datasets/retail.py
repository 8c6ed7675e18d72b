"""UCI Online Retail (dataset 352, CC BY 4.0), cleaned as in the retail chapter.

Accepted files in the dataset folder, first found wins: ``online_retail.parquet``, ``online_retail.csv``,
``Online Retail.csv``, ``Online Retail.xlsx`` (the official workbook), ``online_retail.xlsx`` — all with
the official columns InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country (any capitalisation; Online Retail II's Invoice / Price / Customer ID are accepted as aliases).

Cleaning (the retail chapter; DESIGN §4), nothing more:

1. lower-case the column names;
2. drop every row whose invoiceno starts with "C" (cancellations);
3. a missing customerid is the unknown user (user row 0); customerid is an int (17850.0 -> 17850);
4. stockcode, as a string, is the item; rating = quantity; timestamp = invoicedate;
   group = invoiceno (an invoice's consecutive rows are one transaction).

Row order and duplicate rows are kept exactly as in the file: the published figures depend on them.
The Parquet conversion in ``../shared/datasets`` filled the 1,454 missing descriptions with "Unknown";
the original never holds that word, so it is turned back into a missing description.

Item features: text ``description`` (an item's most frequent description), numeric ``unitprice``
(median per item) and categorical ``price_bucket`` (the median price's quintile, "q1" cheapest .. "q5").
Item labels (``item_labels``) are the descriptions.

Reading the xlsx takes about a minute (openpyxl); the first read is stored as Parquet in the cache
(``$EMBREC_CACHE/online-retail/.converted/``) and later loads read that.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from embrec.data import FeatureTable, Interactions
from embrec.datasets.resolve import cache_root, verified_files
from embrec.errors import DataError, DatasetNotFoundError

logger = logging.getLogger(__name__)

FILES: tuple[str, ...] = (
    "online_retail.parquet",
    "online_retail.csv",
    "Online Retail.csv",
    "Online Retail.xlsx",
    "online_retail.xlsx",
)
COLUMNS: tuple[str, ...] = (
    "invoiceno",
    "stockcode",
    "description",
    "quantity",
    "invoicedate",
    "unitprice",
    "customerid",
    "country",
)
_ALIASES = {"invoice": "invoiceno", "price": "unitprice", "customer id": "customerid"}
_MISSING_DESCRIPTION = "Unknown"
N_PRICE_BUCKETS = 5


def find_file(folder: Path) -> Path:
    """The first accepted Online Retail file in ``folder``; in a folder embrec downloaded, the first of its
    verified files (a file added there later is ignored, with a warning)."""
    verified = verified_files(Path(folder))
    for name in FILES:
        if (Path(folder) / name).is_file():
            if verified is not None and name not in verified:
                logger.warning(
                    "ignoring %s in %s: it is not part of the verified download (put your own copy in "
                    "--data-dir or $EMBREC_DATA instead)",
                    name,
                    folder,
                )
                continue
            return Path(folder) / name
    raise DatasetNotFoundError(
        f"no Online Retail file in {folder}; expected one of {list(FILES)} (e.g. the official 'Online Retail.xlsx')."
    )


def read_online_retail(path: str | Path) -> pd.DataFrame:
    """The raw table (all 541,909 rows, file order) with lower-case official column names."""
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {".parquet": pd.read_parquet, ".csv": _read_csv, ".xlsx": _read_xlsx_cached}
    if suffix not in readers:
        raise DataError(
            f"an Online Retail file must be .parquet, .csv or .xlsx; received {path.name!r}."
        )
    try:
        frame = readers[suffix](path)
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(
            f"Online Retail file {path} could not be read as {suffix} ({exc})."
        ) from None
    return _standardise(frame, path)


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """The chapter's cleaning: drop "C" invoices; keep order and duplicates (index reset)."""
    keep = ~frame["invoiceno"].astype(str).str.startswith("C")
    return frame.loc[keep.to_numpy()].reset_index(drop=True)


def load_online_retail(folder: Path) -> Interactions:
    """Cleaned Online Retail as Interactions (see the module docstring)."""
    path = find_file(folder)
    frame = clean(read_online_retail(path))
    log = Interactions.from_frame(
        frame,
        user_col="customerid",
        item_col="stockcode",
        rating_col="quantity",
        rating_kind="quantity",
        time_col="invoicedate",
        group_col="invoiceno",
        missing_users="unknown",
        name="online-retail",
    )
    log.item_features = FeatureTable.from_frame(
        item_table(frame),
        id_col="stockcode",
        vocab=log.items,
        categorical=["price_bucket"],
        numeric=["unitprice"],
        text=["description"],
    )
    log.item_labels = log.item_features.text["description"].copy()  # shown beside stock codes
    logger.info("loaded %r from %s", log, path)
    return log


def item_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per stockcode: most frequent description, median unitprice, its quintile bucket."""
    price = frame.groupby("stockcode", sort=True)["unitprice"].median()
    desc = frame.loc[frame["description"].notna(), ["stockcode", "description"]]
    counts = desc.groupby(["stockcode", "description"], sort=True).size().rename("n").reset_index()
    # most frequent description per item; ties go to the alphabetically first (deterministic)
    counts = counts.sort_values(["stockcode", "n"], ascending=[True, False], kind="stable")
    top = counts.drop_duplicates("stockcode").set_index("stockcode")["description"]
    table = pd.DataFrame({"unitprice": price}).join(top, how="left")
    table["description"] = table["description"].str.strip()
    table["price_bucket"] = price_buckets(table["unitprice"].to_numpy())
    return table.rename_axis("stockcode").reset_index()


def price_buckets(prices: np.ndarray, n: int = N_PRICE_BUCKETS) -> np.ndarray:
    """Quantile bucket labels "q1".."qn" (equal prices always share a bucket, so ties may merge buckets)."""
    edges = np.unique(np.quantile(prices, np.arange(1, n) / n))
    codes = np.searchsorted(edges, prices, side="left")  # bucket k holds (edge[k-1], edge[k]]
    return np.asarray([f"q{c + 1}" for c in range(n)], dtype=object)[codes]


# reading ---------------------------------------------------------------------------------------
def _standardise(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.rename(
        columns=lambda c: _ALIASES.get(str(c).strip().lower(), str(c).strip().lower())
    )
    missing = [c for c in COLUMNS if c not in frame.columns and c != "country"]
    if missing:
        raise DataError(
            f"Online Retail file {path.name} must have the columns {list(COLUMNS)}; "
            f"missing {missing}, received {list(frame.columns)}."
        )
    for col in ("invoiceno", "stockcode"):
        frame[col] = frame[col].astype(str)
    desc = frame["description"].astype("string")
    frame["description"] = desc.mask(desc == _MISSING_DESCRIPTION)
    frame["customerid"] = pd.to_numeric(frame["customerid"], errors="coerce")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    dtypes = {
        "InvoiceNo": str,
        "StockCode": str,
        "Description": str,
        "CustomerID": "float64",
        "Invoice": str,
        "Customer ID": "float64",
    }
    try:
        frame = pd.read_csv(path, dtype=dtypes, encoding="utf-8")
    except UnicodeDecodeError:  # the circulating Kaggle CSV is latin-1
        frame = pd.read_csv(path, dtype=dtypes, encoding="ISO-8859-1")
    except pd.errors.EmptyDataError:
        raise DataError(
            f"Online Retail file {path} is empty; expected a header and rows."
        ) from None
    date_col = next((c for c in frame.columns if c.strip().lower() == "invoicedate"), None)
    if date_col is not None and not pd.api.types.is_datetime64_any_dtype(frame[date_col]):
        frame[date_col] = _parse_dates(frame[date_col])
    return frame


def _parse_dates(col: pd.Series) -> pd.Series:
    """The Kaggle CSV writes 12/1/2010 8:26 (month first); ISO strings from a pandas export also work."""
    for fmt in ("%m/%d/%Y %H:%M", "ISO8601"):
        try:
            return pd.to_datetime(col, format=fmt)
        except (ValueError, TypeError):
            continue
    return col  # left to Interactions' parser, which reports the first bad value


def _read_xlsx_cached(path: Path) -> pd.DataFrame:
    """Read the workbook once; keep a Parquet copy in the cache keyed by the file's size and mtime."""
    stat = path.stat()
    converted = (
        cache_root()
        / "online-retail"
        / ".converted"
        / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}.parquet"
    )
    if converted.is_file():
        return pd.read_parquet(converted)
    logger.info(
        "reading %s with openpyxl (about a minute; a Parquet copy is kept in %s)",
        path,
        converted.parent,
    )
    frame = pd.read_excel(path, engine="openpyxl")
    frame = _standardise(frame, path)
    tmp: str | None = None
    try:
        converted.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".part", dir=converted.parent)
        os.close(fd)
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, converted)
        tmp = None
    except OSError as exc:  # a read-only cache only costs speed
        logger.warning(
            "could not keep a Parquet copy of %s (%s); the next load reads the xlsx again",
            path,
            exc,
        )
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return frame
