"""Text timestamps read one way for the whole column, or refused with the two values that disagree.

    parse_times(pd.Series(["2021-01-02", "2021-03-04 10:00"]), "ts")      # ISO: always fine
    parse_times(pd.Series(["01/02/2021", "13/02/2021"]), "ts")            # DataError: day-first or month-first?
    parse_times(pd.Series(["01/02/2021", "13/02/2021"]), "ts", time_format="%d/%m/%Y")   # fine

Rules (documented in docs/inputs.md):

- With ``time_format`` every value must match it (``strptime`` codes), else the first that does not is named.
- ISO 8601 dates (``2021-01-02``, ``2021-01-02T10:00:00+01:00``) are read as such.
- Dates whose day and month are both numbers before the year (``01/02/2021``, ``1.2.21``) are read without
  ``time_format`` only when no value can be read both day-first and month-first; otherwise (``01/02/2021``
  beside ``13/02/2021``, or only values like ``01/02/2021``) they are refused, naming the column, two
  example values and the ``time_format`` that would read them.
- Any other text is read with the format pandas infers from the first value; values in another format
  (``2021-01-02`` beside ``Jan 5 2021``) are refused with one example of each.
- Time zones: values with UTC offsets are converted to UTC (the wall-clock times of different offsets are
  not comparable, UTC instants are); mixing several offsets is logged once. Values with an offset beside
  values without one are refused (the naive ones have no known zone). The result is naive UTC.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from embrec.errors import DataError, describe

logger = logging.getLogger(__name__)

_DAY_MONTH = r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?:$|[\sT])"
_ISO = r"^\s*\d{4}-\d{2}-\d{2}(?:$|[\sT]\d)"
_OFFSET = (
    r"(?<=\d\d:\d\d)(?::\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)\s*$"  # after a time of day
)


def parse_times(column: pd.Series, name: str, *, time_format: str | None = None) -> pd.Series:
    """Naive-UTC datetimes from a text column (see the module docstring); missing values stay NaT."""
    text = column.astype("string").str.strip()
    present = text.dropna()
    present = present[present != ""]
    if present.empty:
        return pd.to_datetime(text, errors="coerce")
    uniq = pd.Series(pd.unique(present.to_numpy(dtype=object)), dtype="string")
    if time_format is not None:
        fmt = time_format
    elif uniq.str.match(_ISO).all():
        fmt = "ISO8601"
    else:
        fmt = _day_month_format(uniq, name) or _inferred_format(uniq)
    tz = _zones(uniq, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(uniq, format=fmt, errors="coerce", utc=tz)
    except ValueError as exc:
        raise DataError(
            f"time_format={describe(fmt)} is not a date format for time column {name!r} ({exc})."
        ) from None
    bad = parsed.isna().to_numpy()
    date_part = re.split(r"[ T]%H", fmt or "", maxsplit=1)[0]
    if (
        bad.any() and fmt not in (None, "ISO8601") and date_part != fmt
    ):  # dates without a time of day
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            again = pd.to_datetime(uniq[bad], format=date_part, errors="coerce", utc=tz)
        parsed[bad] = again
        bad = parsed.isna().to_numpy()
    if bad.any():
        _refuse_mixed(uniq, bad, name, fmt, given=time_format is not None)
    if tz:
        parsed = parsed.dt.tz_convert(None)
    lookup = pd.Series(parsed.to_numpy(), index=pd.Index(uniq.to_numpy(dtype=object)))
    out = text.map(lookup)
    return pd.Series(pd.to_datetime(out.to_numpy(dtype="datetime64[ns]")), index=column.index)


def _day_month_format(uniq: pd.Series, name: str) -> str | None:
    """The one format of numeric day/month dates, None when the column is not such; DataError if ambiguous."""
    parts = uniq.str.extract(_DAY_MONTH)
    numeric = parts[0].notna().to_numpy()
    if not numeric.any():
        return None
    if not numeric.all():
        other = uniq[~numeric].iloc[0]
        raise DataError(
            f"time column {name!r} mixes date formats: {describe(uniq[numeric].iloc[0])} and "
            f"{describe(other)}; make them one format, or pass time_format (--time-format) for the "
            "format most values use."
        )
    a = parts[0].astype(int).to_numpy()
    b = parts[2].astype(int).to_numpy()
    both = (a <= 12) & (b <= 12) & (a != b)
    day_only = (a > 12) & (b <= 12)
    month_only = (b > 12) & (a <= 12)
    day_fmt = _format(uniq, True)
    month_fmt = _format(uniq, False)
    if day_only.any() and month_only.any():
        raise DataError(
            f"time column {name!r} mixes day-first and month-first dates: {describe(uniq[day_only].iloc[0])} "
            f"reads only day-first, {describe(uniq[month_only].iloc[0])} only month-first; make them one format "
            "and pass time_format (--time-format) to say which."
        )
    if both.any():
        ambiguous = describe(uniq[both].iloc[0])
        if day_only.any() or month_only.any():
            fmt = day_fmt if day_only.any() else month_fmt
            other = describe(uniq[day_only | month_only].iloc[0])
            raise DataError(
                f"time column {name!r} has dates that read day-first or month-first ({ambiguous}) beside dates "
                f"that read only {'day' if day_only.any() else 'month'}-first ({other}); pass time_format="
                f"{fmt!r} (--time-format) to read them all that way."
            )
        second = uniq[both].iloc[1] if both.sum() > 1 else None
        shown = ambiguous + (f" and {describe(second)}" if second is not None else "")
        raise DataError(
            f"time column {name!r} has dates that read either day-first or month-first ({shown}); pass "
            f"time_format={day_fmt!r} or {month_fmt!r} (--time-format) to say which."
        )
    return day_fmt if day_only.any() else month_fmt


def _format(uniq: pd.Series, dayfirst: bool) -> str:
    """strptime format of the column's day/month dates (time of day included), day- or month-first."""
    sample = str(
        uniq.iloc[int(np.argmax(uniq.str.len().to_numpy()))]
    )  # the longest shows the time part
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fmt = guess_datetime_format(sample, dayfirst=dayfirst)
        other = guess_datetime_format(sample, dayfirst=not dayfirst) or "%d/%m/%Y"
    want = "%d" if dayfirst else "%m"
    if fmt is None or not fmt.startswith(want):  # 13/02 asked month-first: swap the leading fields
        fmt = re.sub(r"%([dm])(.)%([dm])", r"%\3\2%\1", other, count=1)
    return fmt


def _inferred_format(uniq: pd.Series) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return guess_datetime_format(str(uniq.iloc[0]))


def _zones(uniq: pd.Series, name: str) -> bool:
    """True when the values carry UTC offsets (all of them); DataError when only some do."""
    aware = uniq.str.contains(_OFFSET, regex=True).to_numpy()
    if not aware.any():
        return False
    if not aware.all():
        raise DataError(
            f"time column {name!r} mixes times with a UTC offset ({describe(uniq[aware].iloc[0])}) and without "
            f"({describe(uniq[~aware].iloc[0])}); the ones without have no known zone: give every value an "
            "offset, or none."
        )
    offsets = pd.unique(
        uniq.str.extract(r"(Z|[+-]\d{2}(?::?\d{2})?)\s*$")[0].to_numpy(dtype=object)
    )
    if len(offsets) > 1:
        logger.warning(
            "time column %r mixes UTC offsets (%s); every time is converted to UTC",
            name,
            ", ".join(str(o) for o in offsets[:4]) + (", ..." if len(offsets) > 4 else ""),
        )
    return True


def _refuse_mixed(
    uniq: pd.Series, bad: np.ndarray, name: str, fmt: str | None, *, given: bool
) -> None:
    example = describe(uniq[bad].iloc[0])
    if given:
        raise DataError(
            f"time column {name!r} has values that do not match time_format={fmt!r}, e.g. {example} "
            f"({int(bad.sum())} distinct values)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        alone = pd.to_datetime(uniq[bad], format="mixed", errors="coerce", utc=True)
    if alone.notna().any() and (~bad).any():
        raise DataError(
            f"time column {name!r} mixes date formats: {describe(uniq[~bad].iloc[0])} and "
            f"{describe(uniq[bad][alone.notna().to_numpy()].iloc[0])}; make them one format, or pass "
            "time_format (--time-format) for the format most values use."
        )
    raise DataError(
        f"time column {name!r} must hold dates or unix seconds; received unparseable value {example} "
        f"({int(bad.sum())} distinct bad values)."
    )
