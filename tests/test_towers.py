"""Towers and softmax losses: hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embrec.data import FeatureTable, IdVocab, Ragged
from embrec.errors import InvalidParameterError
from embrec.nn.softmax import FullSoftmax, SampledSoftmax, grouped_sampled_nll
from embrec.nn.towers import (
    BagPool,
    ContentTower,
    FeatureEncoder,
    hash_tokens,
    pool_encoded,
    pool_vectors,
    ragged_select,
)


def test_bag_pool_equals_hand_computed_means_on_a_ragged_batch():
    pool = BagPool(6, 2)
    table = torch.tensor([[0, 0], [1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], dtype=torch.float32)
    with torch.no_grad():
        pool.bag.weight.copy_(table)
    hist = Ragged.from_lists([[1, 2, 3], [4], [5, 5, 1, 2]])  # a user with one item in the middle
    values, offsets = hist.to_torch()
    out = pool(values, offsets)
    expected = torch.tensor([[3.0, 4.0], [7.0, 8.0], [(9 + 9 + 1 + 3) / 4, (10 + 10 + 2 + 4) / 4]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(pool_vectors(table, values, offsets), expected)
    # padding row 0 is left out of the mean
    v, o = Ragged.from_lists([[0, 4]]).to_torch()
    torch.testing.assert_close(pool(v, o), torch.tensor([[7.0, 8.0]]))


def test_pool_encoded_encodes_each_distinct_row_once_and_matches_the_mean():
    table = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    calls = []

    def encode(rows):
        calls.append(rows.clone())
        return table[rows] * 2

    v, o = Ragged.from_lists([[1, 1, 3], [5]]).to_torch()
    out = pool_encoded(encode, v, o)
    torch.testing.assert_close(out, torch.stack([(table[1] * 4 + table[3] * 2) / 3, table[5] * 2]))
    assert calls[0].tolist() == [1, 3, 5]


def test_ragged_select_matches_numpy():
    r = Ragged.from_lists([[1, 2], [], [3, 4, 5], [6]])
    rows = np.array([2, 0, 2, 1, 3])
    v, o = ragged_select(*r.to_torch(), torch.as_tensor(rows))
    want = r.select(rows)
    assert v.tolist() == want.values.tolist() and o.tolist() == want.offsets.tolist()


def _table() -> tuple[FeatureTable, IdVocab]:
    vocab = IdVocab(["a", "b", "c", "d"], name="item")
    ft = FeatureTable(
        n_rows=5,
        categorical={"colour": np.array([0, 1, 2, 1, 0])},
        multi_hot={"tags": Ragged.from_lists([[], [1, 2], [2], [], [1]])},
        numeric={"price": np.array([np.nan, 1.0, 2.0, 3.0, np.nan], dtype=np.float32)},
        text={"desc": np.array(["", "Red Mug", "blue mug", "teapot", ""], dtype=object)},
        vocabularies={"colour": ["red", "blue"], "tags": ["x", "y"]},
    )
    return ft, vocab


def test_feature_encoder_standardises_buckets_and_hashes():
    ft, _ = _table()
    enc = FeatureEncoder(n_quantiles=2, n_hash_buckets=97).fit(ft)
    f = enc.encode(ft)
    mean, std = 2.0, np.std([1.0, 2.0, 3.0])
    np.testing.assert_allclose(f.numeric[1:4, 0], (np.array([1, 2, 3]) - mean) / std, rtol=1e-6)
    assert f.missing[:, 0].tolist() == [1, 0, 0, 0, 1]  # row 0 padding and item d have no price
    assert f.categorical[:, 0].tolist() == [0, 1, 2, 1, 0]
    assert f.categorical[:, 1].tolist() == [0, 1, 2, 2, 0]  # price median 2 splits two buckets
    mug = hash_tokens(np.array(["MUG!"]), 97).values[0]
    assert mug in f.bags[1][1] and mug in f.bags[1][2] and mug not in f.bags[1][3]
    assert f.empty_rows().tolist() == [0]  # only padding: item d still has a tag


def test_feature_encoder_encodes_a_new_frame_with_the_training_vocabularies():
    import pandas as pd

    ft, _ = _table()
    enc = FeatureEncoder().fit(ft)
    frame = pd.DataFrame({"id": ["n1", "n2"], "colour": ["blue", "green"], "tags": ["y|x", None],
                          "price": [2.0, None], "desc": ["red mug", "lamp"]})
    f = enc.encode_frame(frame, id_col="id", vocab=IdVocab(["n1", "n2"]))
    assert f.categorical[1:, 0].tolist() == [2, 0]  # unseen colour -> missing
    assert sorted(f.bags[0][1].tolist()) == [1, 2] and f.bags[0][2].tolist() == []
    assert f.missing[1:, 0].tolist() == [0.0, 1.0]
    assert sorted(f.bags[1][1].tolist()) == sorted(enc.encode(ft).bags[1][1].tolist())  # same words


def test_content_tower_without_id_depends_only_on_features():
    ft, _ = _table()
    enc = FeatureEncoder().fit(ft)
    tower = ContentTower(enc, feature_dim=4, hidden=[8], out_dim=3, n_id_rows=5).eval()
    feats = enc.encode(ft)
    tower.features = feats.concat(feats).to_torch()  # rows 5..8: cold copies of items 1..4 (no id row)
    with torch.no_grad():
        tower.ids.weight.normal_()
        warm, cold = tower(torch.tensor([1])), tower(torch.tensor([5]))
        torch.testing.assert_close(cold, warm - tower.ids.weight[1:2])  # the cold copy: features alone
        tower.ids.weight.add_(1.0)
        assert not torch.allclose(tower(torch.tensor([1])), warm)  # a warm item uses its id part
        torch.testing.assert_close(tower(torch.tensor([5])), cold)


def test_full_softmax_matches_hand_computation():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    loss = FullSoftmax()(logits, example=torch.tensor([0, 1, 1]), target=torch.tensor([1, 2, 0]))
    lse0 = math.log(math.e + math.e ** 2 + 1)
    lse1 = math.log(2 + math.e ** 3)
    want = ((lse0 - 2) + (lse1 - 3) + (lse1 - 0)) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    half = FullSoftmax(temperature=0.5)(logits, example=torch.tensor([0]), target=torch.tensor([1]))
    assert half.item() == pytest.approx(math.log(math.e ** 2 + math.e ** 4 + 1) - 4, rel=1e-6)


def test_logq_correction_matches_hand_computed_example():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pos = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    ids = torch.tensor([10, 11])
    logq = torch.log(torch.tensor([0.5, 0.25]))
    loss = SampledSoftmax(remove_accidental_hits=False)(q, pos, ids, positive_logq=logq)
    # logits = q @ pos.T = [[2, 1], [0, 2]]; minus log q per column: + [ln 2, ln 4]
    r0 = [2 + math.log(2), 1 + math.log(4)]
    r1 = [0 + math.log(2), 2 + math.log(4)]
    want = (-(r0[0] - math.log(sum(math.exp(x) for x in r0)))
            - (r1[1] - math.log(sum(math.exp(x) for x in r1)))) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # without the correction the popular item is not favoured
    plain = SampledSoftmax(logq_correction=False, remove_accidental_hits=False)(q, pos, ids)
    assert plain.item() == pytest.approx((-(2 - math.log(math.e ** 2 + math.e)) - (2 - math.log(1 + math.e ** 2))) / 2,
                                         rel=1e-6)


def test_accidental_hits_and_same_example_positives_are_masked():
    q = torch.ones(3, 2)
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    ids = torch.tensor([5, 6, 5])  # rows 0 and 2 share item 5
    sm = SampledSoftmax(logq_correction=False)
    logits = sm.logits(q, pos, ids)
    assert logits[0, 2] < -1e8 and logits[2, 0] < -1e8 and logits[0, 0] == 1.0 and logits[0, 1] == 1.0
    grouped = sm.logits(q, pos, torch.tensor([1, 2, 3]), groups=torch.tensor([0, 0, 1]))
    assert grouped[0, 1] < -1e8 and grouped[1, 0] < -1e8 and grouped[0, 2] == 1.0
    with pytest.raises(InvalidParameterError, match="positive_logq"):
        SampledSoftmax()(q, pos, ids)
    with pytest.raises(InvalidParameterError, match="temperature"):
        SampledSoftmax(temperature=0)


def test_extra_negatives_get_their_own_logq():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    loss = SampledSoftmax()(q, pos, torch.tensor([1]), positive_logq=torch.tensor([0.0]), negatives=neg,
                            negative_ids=torch.tensor([2, 3]), negative_logq=torch.log(torch.tensor([0.5, 0.5])))
    row = [1.0, 0.0 + math.log(2), 1.0 + math.log(2)]
    assert loss.item() == pytest.approx(-(row[0] - math.log(sum(math.exp(x) for x in row))), rel=1e-6)


def test_full_softmax_per_example_weighs_every_example_the_same():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    example, target = torch.tensor([0, 1, 1]), torch.tensor([1, 2, 0])
    lse0 = math.log(math.e + math.e ** 2 + 1)
    lse1 = math.log(2 + math.e ** 3)
    want = ((lse0 - 2) + ((lse1 - 3) + (lse1 - 0)) / 2) / 2  # example 0's one pair = example 1's two
    assert FullSoftmax(per_example=True)(logits, example=example, target=target).item() == pytest.approx(want, rel=1e-6)


def test_grouped_sampled_nll_equals_the_per_target_rows():
    """One logit row per example gives the same losses and gradients as SampledSoftmax's row per target
    (groups = example, accidental hits removed, a per-example mask, a fully closed row), including
    items that are targets of several examples and also drawn as negatives."""
    g = torch.Generator().manual_seed(3)
    b, d = 4, 5
    example = torch.tensor([0, 0, 1, 2, 2, 2, 3])  # 7 targets
    target_ids = torch.tensor([5, 6, 5, 7, 8, 6, 9])
    neg_ids = torch.tensor([5, 10, 11, 6, 12, 7])
    ids = torch.cat([target_ids, neg_ids])  # (13,)
    t = example.numel()
    psi = torch.randn(b, d, generator=g, requires_grad=True)
    cand = torch.randn(ids.numel(), d, generator=g)
    cand = cand[torch.unique(ids, return_inverse=True)[1]].clone().requires_grad_(True)  # one vector per item
    offset = torch.randn(b, ids.numel(), generator=g)
    logq = torch.randn(ids.numel(), generator=g)
    mask = torch.rand(b, ids.numel(), generator=g) < 0.2
    mask[3] = True  # example 3 leaves every candidate out: only its target's own column is left

    grouped = grouped_sampled_nll(psi @ cand.T + offset - logq[None, :], example, ids, mask)
    rows = SampledSoftmax(logq_correction=False).logits(
        psi[example], cand[:t], target_ids, negatives=cand[t:], negative_ids=neg_ids, groups=example,
        offset=offset[example] - logq[None, :], mask=mask[example])
    per_target = torch.nn.functional.cross_entropy(rows, torch.arange(t), reduction="none")
    torch.testing.assert_close(grouped, per_target, rtol=1e-5, atol=1e-6)
    assert grouped[-1].item() == pytest.approx(0.0, abs=1e-6)  # alone in its softmax
    want = torch.autograd.grad(per_target.sum(), (psi, cand))
    got = torch.autograd.grad(grouped_sampled_nll(psi @ cand.T + offset - logq[None, :], example, ids, mask).sum(),
                              (psi, cand))
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-6)
