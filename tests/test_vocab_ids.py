"""IdVocab.encode on ids that are not int64: out of range, booleans, big integers written as text."""

from __future__ import annotations

import numpy as np
import pytest

from embrec.data.vocab import IdVocab
from embrec.errors import UnknownIdError

BIG = 2**53 + 1  # 9007199254740993: not representable as a float64


@pytest.fixture()
def vocab() -> IdVocab:
    return IdVocab.from_values([0, 1, 2, BIG - 1, BIG, 2**63 - 1], name="user")


@pytest.mark.parametrize(
    "raw, row",
    [
        (1, 2),
        ("1", 2),
        (" 2 ", 3),
        (2.0, 3),
        ("2.0", 3),
        (np.int32(2), 3),
        (np.uint64(2), 3),
        (str(BIG), 5),
        (BIG, 5),
        (str(BIG - 1), 4),
        (2**63 - 1, 6),
        (np.uint64(2**63 - 1), 6),
        (True, 0),
        (False, 0),
        (np.bool_(True), 0),
        (2**63, 0),
        (2**64, 0),
        (np.uint64(2**64 - 1), 0),
        (10**30, 0),
        ("1" * 31, 0),
        ("1e30", 0),
        (-(2**63) - 1, 0),
        (1.5, 0),
        ("abc", 0),
        (float("nan"), 0),
        ("", 0),
        (None, 0),
    ],
)
def test_encode_only_exact_int64_ids(vocab, raw, row):
    assert vocab.encode([raw], unknown="zero").tolist() == [row]


def test_mixed_lists_and_membership(vocab):
    assert vocab.encode([1, 2**64, True, "2"], unknown="zero").tolist() == [2, 0, 0, 3]
    assert 1 in vocab and True not in vocab and 2**64 not in vocab and "junk" not in vocab
    with pytest.raises(UnknownIdError, match=r"^user id 18446744073709551616 is not known"):
        vocab.encode([1, 2**64])


def test_unknown_id_message_is_short(vocab):
    with pytest.raises(UnknownIdError) as err:
        vocab.encode(["x" * 1_000_000])
    assert len(str(err.value)) < 160 and "xxx..." in str(err.value)


def test_a_minus_one_id_is_not_matched_by_junk():
    vocab = IdVocab(
        np.array([-1, 5]), name="item"
    )  # a vocabulary may hold -1 (the old placeholder)
    assert vocab.encode(["abc", 2**64, -1], unknown="zero").tolist() == [0, 0, 1]
