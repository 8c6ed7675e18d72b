"""A seeded synthetic shop log with planted, checkable structure.

``synthetic(...)`` returns an Interactions log of ``n_interactions`` purchase rows (rating = quantity,
timestamp, group = basket id; baskets are consecutive rows, the log is in time order). Everything comes
from one seed, in two independent streams: the *planted truth* (catalogue, users' tastes) and the
*simulation* (baskets), so the truth depends only on n_users, n_items, n_categories, seed,
popularity_exponent and n_favourites (``synthetic_truth`` returns it).

Planted truth
-------------
- **Item clusters.** Item i belongs to category ``c(i)`` (balanced, shuffled): item feature categorical
  ``category``. Items carry numeric ``price`` (log-normal around a per-category level) and text
  ``description`` = a generic adjective + two words from the category's own word pool.
- **Popularity.** Item weight ``w_i = rank_i ** -popularity_exponent`` over a random ranking (Zipf):
  a few items get most purchases.
- **Segments.** User u prefers category ``s(u)``: user feature categorical ``segment`` (same labels and
  codes as ``category``).
- **Favourites.** User u has ``n_favourites`` favourite items drawn from s(u) by popularity; they rebuy them.
- **Successors.** Item i has a successor ``succ(i)``: another item of the same category, drawn by popularity.

Simulation
----------
Basket sizes are geometric with mean ``mean_basket_size``. Every user gets one basket (while baskets
last), the rest go to users in proportion to a log-normal activity (``activity_sigma``): history lengths
are heavy-tailed. A basket has a time (uniform day in ``days`` from ``start``, 08:00-20:00) and a theme
category: s(u) with probability ``segment_affinity``, else a random one. Each row of a basket is, in order:

1. (not the first row) with probability ``successor_probability``: ``succ(previous row's item)``;
2. else with probability ``repeat_probability``: one of the user's favourites (uniform);
3. else with probability ``category_affinity``: an item of the basket's theme, by popularity;
4. else: any item, by popularity.

Quantities are geometric (mean 2). Checks that follow: pairs of items in one basket share a category far
more often than chance (~1/n_categories); the row after item i is succ(i) with probability near
``successor_probability``; a user's rows hit their favourites far above chance.

Vectorised NumPy: 1M rows in a few seconds (benchmarks/bench_datasets.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embrec.data import FeatureTable, IdVocab, Interactions
from embrec.errors import InvalidParameterError, check_float, check_positive_int, describe

logger = logging.getLogger(__name__)

_THEMES: dict[str, tuple[str, ...]] = {
    "kitchen": ("mug", "teapot", "spoon", "bowl", "ceramic", "apron"),
    "garden": ("planter", "seeds", "trowel", "watering", "herb", "birdhouse"),
    "toys": ("puzzle", "doll", "robot", "marbles", "kite", "spinning"),
    "stationery": ("notebook", "pencil", "envelope", "stamp", "journal", "ruler"),
    "candles": ("candle", "tealight", "wax", "lantern", "scented", "holder"),
    "bags": ("tote", "backpack", "purse", "jumbo", "shopper", "pouch"),
    "lighting": ("lamp", "bulb", "fairy", "string", "nightlight", "shade"),
    "party": ("bunting", "balloon", "napkin", "cake", "banner", "confetti"),
    "christmas": ("bauble", "wreath", "reindeer", "advent", "snowflake", "stocking"),
    "bathroom": ("towel", "soap", "sponge", "mirror", "toothbrush", "bath"),
    "jewellery": ("necklace", "bracelet", "earrings", "ring", "pendant", "brooch"),
    "pets": ("collar", "leash", "kennel", "catnip", "chew", "feeder"),
}
_ADJECTIVES = (
    "vintage",
    "large",
    "small",
    "red",
    "blue",
    "pink",
    "white",
    "retro",
    "green",
    "gold",
    "classic",
    "mini",
)
_SYLLABLES = ("ka", "lo", "mi", "ren", "tas", "vo", "zu", "pel", "dor", "shi")


@dataclass(frozen=True)
class SyntheticTruth:
    """The planted structure, aligned with the vocab rows of ``synthetic()`` (row 0 = padding).

    item_category (items.size,) category index (-1 at row 0); user_segment (users.size,) likewise;
    successor (items.size,) item row of succ(i) (0 at row 0); favourites (users.size, n_favourites) item
    rows; popularity (items.size,) Zipf weight (0 at row 0); category_labels: label of each index.
    """

    item_category: np.ndarray
    user_segment: np.ndarray
    successor: np.ndarray
    favourites: np.ndarray
    popularity: np.ndarray
    category_labels: list[str]
    price: np.ndarray
    description: np.ndarray


def synthetic_truth(
    *,
    n_users: int = 1000,
    n_items: int = 500,
    n_categories: int = 10,
    seed: int = 0,
    popularity_exponent: float = 1.0,
    n_favourites: int = 5,
) -> SyntheticTruth:
    """The structure ``synthetic()`` plants for these parameters (it depends on nothing else)."""
    n_users = check_positive_int("n_users", n_users)
    n_items = check_positive_int("n_items", n_items)
    n_categories = check_positive_int("n_categories", n_categories)
    n_favourites = check_positive_int("n_favourites", n_favourites)
    popularity_exponent = check_float("popularity_exponent", popularity_exponent, low=0.0)
    if n_categories > n_items:
        raise InvalidParameterError(
            f"n_categories must be <= n_items ({n_items}) so every category has an item; received {n_categories}."
        )
    rng = np.random.default_rng(np.random.SeedSequence(_seed(seed)).spawn(2)[0])
    category = rng.permutation(np.arange(n_items) % n_categories)
    weight = (rng.permutation(n_items) + 1.0) ** -popularity_exponent
    sampler = _CategorySampler(category, weight, n_categories)
    successor = sampler.draw(category, rng)
    # redraw successors that point to themselves (kept only in 1-item categories)
    for _ in range(8):
        same = successor == np.arange(n_items)
        if not same.any():
            break
        successor[same] = sampler.draw(category[same], rng)
    segment = rng.integers(0, n_categories, size=n_users)
    favourites = sampler.draw(np.repeat(segment, n_favourites), rng).reshape(n_users, n_favourites)
    labels = _labels(n_categories)
    level = rng.uniform(np.log(1.5), np.log(30.0), size=n_categories)
    price = np.round(np.exp(level[category] + 0.35 * rng.standard_normal(n_items)), 2).clip(0.1)
    words = _word_pools(labels)
    adj = rng.integers(0, len(_ADJECTIVES), size=n_items)
    w1, w2 = rng.integers(0, 6, size=(2, n_items))
    w2 = np.where(w2 == w1, (w2 + 1) % 6, w2)
    desc = np.array(
        [
            f"{_ADJECTIVES[a]} {words[c][x]} {words[c][y]}"
            for a, c, x, y in zip(adj, category, w1, w2)
        ],
        dtype=object,
    )

    def pad(a: np.ndarray, fill) -> np.ndarray:
        return np.concatenate([np.full((1, *a.shape[1:]), fill, dtype=a.dtype), a])

    return SyntheticTruth(
        item_category=pad(category.astype(np.int64), -1),
        user_segment=pad(segment.astype(np.int64), -1),
        successor=pad(successor + 1, 0),
        favourites=pad(favourites + 1, 0),
        popularity=pad(weight, 0.0),
        category_labels=labels,
        price=pad(price.astype(np.float32), np.nan),
        description=pad(desc, ""),
    )


def synthetic(
    *,
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 20000,
    n_categories: int = 10,
    seed: int = 0,
    mean_basket_size: float = 4.0,
    popularity_exponent: float = 1.0,
    segment_affinity: float = 0.7,
    category_affinity: float = 0.8,
    repeat_probability: float = 0.3,
    successor_probability: float = 0.4,
    n_favourites: int = 5,
    activity_sigma: float = 1.0,
    start: str = "2023-01-01",
    days: int = 365,
    name: str = "synthetic",
    out: str | Path | None = None,
    chunk_rows: int = 1 << 20,
) -> Interactions | Path:
    """A seeded shop log with planted structure (see the module docstring for the full recipe).

    With ``out`` (a new or empty directory) the log is not returned but written there in chunks of about
    ``chunk_rows`` rows (whole baskets) as ``part-00000.parquet``, ... (columns user, item, quantity,
    timestamp, basket; see ``embrec.datasets.synthetic_parquet``) beside ``_item_features.parquet`` and
    ``_user_features.parquet`` (skipped by the log's scan), and ``out`` is returned: the same seed
    gives the same events as the log returned without ``out``, whatever ``chunk_rows``.
    """
    truth = synthetic_truth(
        n_users=n_users,
        n_items=n_items,
        n_categories=n_categories,
        seed=seed,
        popularity_exponent=popularity_exponent,
        n_favourites=n_favourites,
    )
    n = check_positive_int("n_interactions", n_interactions)
    mean_size = check_float("mean_basket_size", mean_basket_size, low=1.0)
    p_seg = check_float("segment_affinity", segment_affinity, low=0.0, high=1.0)
    p_cat = check_float("category_affinity", category_affinity, low=0.0, high=1.0)
    p_rep = check_float("repeat_probability", repeat_probability, low=0.0, high=1.0)
    p_succ = check_float("successor_probability", successor_probability, low=0.0, high=1.0)
    sigma = check_float("activity_sigma", activity_sigma, low=0.0)
    days = check_positive_int("days", days)
    try:
        t0 = np.datetime64(pd.Timestamp(start).to_datetime64(), "s")
    except (ValueError, TypeError):
        raise InvalidParameterError(
            f"start must be a date such as '2023-01-01'; received {describe(start)}."
        ) from None

    rng = np.random.default_rng(np.random.SeedSequence(_seed(seed)).spawn(2)[1])
    category = truth.item_category[1:]
    sampler = _CategorySampler(category, truth.popularity[1:], n_categories)
    succ, fav, segment = truth.successor[1:] - 1, truth.favourites[1:] - 1, truth.user_segment[1:]

    # baskets: sizes, owners, times, themes ---------------------------------------------------------
    sizes, owner, seconds, theme = _baskets(
        n, n_users, n_categories, mean_size, sigma, days, p_seg, segment, rng
    )
    n_baskets = sizes.size
    if out is not None:
        from embrec.datasets.synthetic_parquet import write_features, write_rows

        rows = RowRecipe(
            p_succ=p_succ, p_rep=p_rep, p_cat=p_cat, succ=succ, fav=fav, sampler=sampler
        )
        path = write_rows(
            out,
            n,
            rows,
            sizes,
            owner,
            seconds,
            theme,
            rng,
            t0=t0,
            n_users=n_users,
            n_items=n_items,
            chunk_rows=chunk_rows,
            name=name,
        )
        write_features(path, truth, n_users=n_users, n_items=n_items)
        return path

    # rows ---------------------------------------------------------------------------------------------
    basket = np.repeat(np.arange(n_baskets), sizes)  # (n,) basket of each row
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(n) - starts[basket]  # (n,) position inside the basket
    user = owner[basket]
    u = rng.random(n)
    is_succ = (pos > 0) & (u < p_succ)
    v = rng.random(n)
    is_rep = ~is_succ & (v < p_rep)
    is_cat = ~is_succ & ~is_rep & (v < p_rep + (1.0 - p_rep) * p_cat)
    is_any = ~is_succ & ~is_rep & ~is_cat
    item = np.zeros(n, dtype=np.int64)
    item[is_rep] = fav[user[is_rep], rng.integers(0, fav.shape[1], size=int(is_rep.sum()))]
    item[is_cat] = sampler.draw(theme[basket[is_cat]], rng)
    item[is_any] = sampler.draw_any(int(is_any.sum()), rng)
    succ_rows = np.flatnonzero(is_succ)
    succ_rows = succ_rows[np.argsort(pos[succ_rows], kind="stable")]
    bounds = np.searchsorted(pos[succ_rows], np.arange(1, int(pos.max()) + 2))
    for k in range(bounds.size - 1):  # position by position: row r follows row r - 1
        rows = succ_rows[bounds[k] : bounds[k + 1]]
        item[rows] = succ[item[rows - 1]]
    quantity = rng.geometric(0.5, size=n).astype(np.float32)

    users = IdVocab(_ids("U", n_users), name="user")
    items = IdVocab(_ids("I", n_items), name="item")
    labels = truth.category_labels
    item_features = FeatureTable(
        n_rows=items.size,
        categorical={"category": truth.item_category + 1},
        numeric={"price": truth.price},
        text={"description": truth.description},
        vocabularies={"category": list(labels)},
    )
    user_features = FeatureTable(
        n_rows=users.size,
        categorical={"segment": truth.user_segment + 1},
        vocabularies={"segment": list(labels)},
    )
    log = Interactions(
        user=user + 1,
        item=item + 1,
        users=users,
        items=items,
        rating=quantity,
        rating_kind="quantity",
        timestamp=t0 + seconds[basket].astype("timedelta64[s]"),
        group=basket,
        item_features=item_features,
        user_features=user_features,
        name=name,
        item_labels=np.asarray(truth.description, dtype=object),
    )  # labels: the short texts
    logger.info("generated %r (seed %s, %d baskets)", log, seed, n_baskets)
    return log


def _baskets(
    n: int,
    n_users: int,
    n_categories: int,
    mean_size: float,
    sigma: float,
    days: int,
    p_seg: float,
    segment: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """(sizes, owner, seconds, theme) of every basket, in time order (the draws of ``synthetic``)."""
    sizes = _basket_sizes(n, mean_size, rng)
    n_baskets = sizes.size
    first = rng.permutation(n_users)[: min(n_users, n_baskets)]
    activity = rng.lognormal(0.0, sigma, size=n_users)
    owner = np.concatenate(
        [first, rng.choice(n_users, size=n_baskets - first.size, p=activity / activity.sum())]
    )
    seconds = (
        rng.integers(0, days, size=n_baskets) * 86400
        + 8 * 3600
        + rng.integers(0, 12 * 3600, size=n_baskets)
    )
    order = np.argsort(seconds, kind="stable")
    sizes, owner, seconds = sizes[order], owner[order], seconds[order]
    theme = np.where(
        rng.random(n_baskets) < p_seg, segment[owner], rng.integers(0, n_categories, size=n_baskets)
    )
    return sizes, owner, seconds, theme


@dataclass(frozen=True)
class RowRecipe:
    """What the row draws of ``synthetic`` need besides the baskets (0-based item and user indices)."""

    p_succ: float
    p_rep: float
    p_cat: float
    succ: np.ndarray
    fav: np.ndarray
    sampler: _CategorySampler


class _CategorySampler:
    """Draw items by popularity, within given categories, vectorised.

    All items sorted by category; a row's cumulative weights are rescaled into [c, c + 1) so one
    ``searchsorted`` over the concatenation draws, for each requested category c, an item of c.
    """

    def __init__(self, category: np.ndarray, weight: np.ndarray, n_categories: int) -> None:
        self.order = np.argsort(category, kind="stable")
        cat_sorted = category[self.order]
        w = weight[self.order].astype(np.float64)
        totals = np.bincount(cat_sorted, weights=w, minlength=n_categories)
        within = np.cumsum(w) - np.concatenate([[0.0], np.cumsum(totals)[:-1]])[cat_sorted]
        self.cum = cat_sorted + within / totals[cat_sorted]
        self.cum_any = np.cumsum(weight) / weight.sum()

    def draw(self, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = np.asarray(categories) + rng.random(np.size(categories))
        idx = np.searchsorted(self.cum, r, side="right").clip(max=self.cum.size - 1)
        return self.order[idx]

    def draw_any(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return np.searchsorted(self.cum_any, rng.random(size), side="right").clip(
            max=self.cum_any.size - 1
        )


def _basket_sizes(n: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Geometric sizes (mean ``mean``) summing exactly to ``n`` (the last basket is cut)."""
    sizes = np.zeros(0, dtype=np.int64)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, rng.geometric(1.0 / mean, size=int(n / mean * 1.1) + 16)])
    total = np.cumsum(sizes)
    last = int(np.searchsorted(total, n))
    sizes = sizes[: last + 1].copy()
    sizes[-1] -= total[last] - n
    return sizes


def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(n))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _labels(n_categories: int) -> list[str]:
    names = list(_THEMES)
    return [names[k] if k < len(names) else f"category{k:03d}" for k in range(n_categories)]


def _word_pools(labels: list[str]) -> list[tuple[str, ...]]:
    """Six words per category, never shared between categories."""
    pools = []
    for k, label in enumerate(labels):
        if label in _THEMES:
            pools.append(_THEMES[label])
        else:
            s = _SYLLABLES
            pools.append(tuple(f"{s[(k + j) % 10]}{s[(3 * k + 7 * j) % 10]}{k}" for j in range(6)))
    return pools


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(
            f"seed must be a non-negative integer; received {describe(seed)}."
        )
    return int(seed)
