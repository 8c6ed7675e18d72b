"""MovieLens 100K (GroupLens, 1998) in its official layout.

Files read from the dataset folder (the archive's ``ml-100k/``):

- ``u.data``   user id | item id | rating | unix seconds (tab-separated), 100,000 rows;
- ``u.item``   item id | title | release date | video release date | IMDb URL | 19 genre flags
  (``|``-separated, ISO-8859-1);
- ``u.genre``  genre label | flag position (the labels of the 19 flags, in order);
- ``u.user``   user id | age | gender | occupation | zip code;
- ``u1..u5``, ``ua``, ``ub`` ``.base`` / ``.test``: the official splits, same format as ``u.data``.

Features: items get multi-hot ``genres`` (labels in u.genre order), numeric ``year`` (release year, NaN
when unknown) and text ``title``; users get numeric ``age`` and categorical ``gender`` and ``occupation``.
Item labels (``item_labels``, shown beside ids and saved with models) are the titles.
Raw user and item ids are ints.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from embrec.data import FeatureTable, Interactions
from embrec.errors import DataError, DatasetNotFoundError, check_choice

logger = logging.getLogger(__name__)

FOLDS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
REQUIRED_FILES = ("u.data", "u.item", "u.user", "u.genre")
_ENCODING = "ISO-8859-1"


def read_ratings(path: Path) -> pd.DataFrame:
    """A ``u.data``-style file as a frame with columns user, item, rating, timestamp."""
    if not path.is_file():
        raise DatasetNotFoundError(
            f"MovieLens file {path.name} is missing; put it in {path.parent}."
        )
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=RATING_COLUMNS,
        dtype={"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64},
    )
    if frame.empty:
        raise DataError(
            f"MovieLens file {path} is empty; expected tab-separated user, item, rating, time rows."
        )
    return frame


def read_genres(folder: Path) -> list[str]:
    """The 19 genre labels in flag order (u.genre: ``label|position``)."""
    frame = pd.read_csv(
        folder / "u.genre",
        sep="|",
        header=None,
        names=["genre", "pos"],
        encoding=_ENCODING,
        dtype={"genre": str},
    )
    frame = frame.dropna().sort_values("pos")
    return frame["genre"].tolist()


def read_items(folder: Path) -> pd.DataFrame:
    """u.item with columns item, title, year, genres (``|``-joined labels) — one row per movie."""
    genres = read_genres(folder)
    names = ["item", "title", "release_date", "video_release_date", "imdb_url", *genres]
    frame = pd.read_csv(
        folder / "u.item",
        sep="|",
        header=None,
        names=names,
        encoding=_ENCODING,
        dtype={"title": str, "release_date": str},
    )
    flags = frame[genres].to_numpy(dtype=bool)
    labels = np.asarray(genres, dtype=object)
    frame["genres"] = ["|".join(labels[row]) for row in flags]
    released = pd.to_datetime(frame["release_date"], format="%d-%b-%Y", errors="coerce")
    frame["year"] = released.dt.year.astype("float32")
    return frame[["item", "title", "year", "genres"]]


def read_users(folder: Path) -> pd.DataFrame:
    """u.user with columns user, age, gender, occupation, zip_code."""
    return pd.read_csv(
        folder / "u.user",
        sep="|",
        header=None,
        names=["user", "age", "gender", "occupation", "zip_code"],
        encoding=_ENCODING,
        dtype={"zip_code": str},
    )


def load_ml100k(folder: Path) -> Interactions:
    """All 100,000 ratings of ``folder/u.data`` with item and user features."""
    folder = Path(folder)
    ratings = read_ratings(folder / "u.data")
    log = Interactions.from_frame(
        ratings,
        user_col="user",
        item_col="item",
        rating_col="rating",
        time_col="timestamp",
        name="ml-100k",
    )
    items = read_items(folder)
    genre_labels = read_genres(folder)
    log.item_features = FeatureTable.from_frame(
        items,
        id_col="item",
        vocab=log.items,
        multi_hot={"genres": "|"},
        numeric=["year"],
        text=["title"],
        vocabularies={"genres": genre_labels},
    )
    log.item_labels = log.item_features.text["title"].copy()  # the label shown beside a movie's id
    users = read_users(folder)
    log.user_features = FeatureTable.from_frame(
        users,
        id_col="user",
        vocab=log.users,
        categorical=["gender", "occupation"],
        numeric=["age"],
    )
    logger.info("loaded %r from %s", log, folder)
    return log


def load_ml100k_fold(
    folder: Path, fold: str, full: Interactions
) -> tuple[Interactions, Interactions]:
    """(``fold``.base, ``fold``.test) encoded with the vocabularies of ``full`` and sharing its features."""
    check_choice("fold", fold, FOLDS)
    parts = []
    for part in ("base", "test"):
        path = Path(folder) / f"{fold}.{part}"
        if not path.is_file():
            raise DatasetNotFoundError(
                f"MovieLens fold file {path.name} is missing; put the official ml-100k {path.name} in {folder}."
            )
        frame = read_ratings(path)
        log = Interactions.from_frame(
            frame,
            user_col="user",
            item_col="item",
            rating_col="rating",
            time_col="timestamp",
            users=full.users,
            items=full.items,
            name=f"ml-100k/{fold}.{part}",
        )
        unknown = int(((log.user == 0) | (log.item == 0)).sum())
        if unknown:
            raise DataError(
                f"{path.name} must only hold users and items of u.data; received {unknown} rows with "
                "other ids (the folder mixes files of different MovieLens releases)."
            )
        parts.append(
            replace(
                log,
                item_features=full.item_features,
                user_features=full.user_features,
                item_labels=full.item_labels,
            )
        )
    return parts[0], parts[1]
