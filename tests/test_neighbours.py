"""genre_overlap against a hand-computed example, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from embrec import Ragged
from embrec.errors import DataError, InvalidParameterError
from embrec.evaluation.neighbours import genre_overlap

# items 0,1 point one way (genres {A} and {A,B}); items 2,3 the other way (both {C}); item 4 sits next
# to item 0 but has no genre, so it is neither queried nor returned as a neighbour.
VECS = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [1.0, 0.01]])
A, B, C = 1, 2, 3
GENRES = Ragged.from_lists([[A], [A, B], [C], [C], []])


def test_hand_computed_overlap():
    out = genre_overlap(VECS, GENRES, k=1)
    # neighbours: 0->1, 1->0 (jaccard 1/2 each), 2->3, 3->2 (jaccard 1): mean 0.75, all share a genre
    assert out["neighbour_jaccard"] == pytest.approx(0.75)
    assert out["neighbour_share"] == pytest.approx(1.0)
    # all 6 unordered pairs of labelled items: (0,1)=1/2, (2,3)=1, the other four 0 -> 1.5/6
    assert out["random_jaccard"] == pytest.approx(0.25)
    assert out["random_share"] == pytest.approx(2 / 6)
    assert out["ratio"] == pytest.approx(3.0)
    assert out["n_queries"] == 4 and out["k"] == 1


def test_restricted_queries_and_dot_measure():
    out = genre_overlap(VECS, GENRES, k=1, queries=np.array([0, 4]), measure="dot")
    # item 4 has no genre: dropped; item 0's dot neighbour is item 1 (0.9) -> jaccard 1/2
    assert out["n_queries"] == 1
    assert out["neighbour_jaccard"] == pytest.approx(0.5)


def test_random_embeddings_sit_near_chance():
    rng = np.random.default_rng(0)
    genres = Ragged.from_lists([[int(g)] for g in rng.integers(1, 5, size=400)])
    out = genre_overlap(rng.normal(size=(400, 16)), genres, k=10)
    assert out["random_jaccard"] == pytest.approx(0.25, abs=0.02)
    assert 0.7 < out["ratio"] < 1.3


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="one row per item vector"):
        genre_overlap(VECS, Ragged.from_lists([[1]]), k=1)
    with pytest.raises(InvalidParameterError, match="k must be smaller"):
        genre_overlap(VECS, GENRES, k=5)
    with pytest.raises(DataError, match="at least two items with a label"):
        genre_overlap(VECS, Ragged.from_lists([[1], [], [], [], []]), k=1)
