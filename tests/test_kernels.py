"""The compiled CPU kernels (embrec.nn.kernels) against the PyTorch code they replace on CPU, which stays
the path on other devices and without Numba: the same loss, gradients and Adam steps on the same input
(rows drawn several times included), rows outside a table refused before anything is written, and the
seen-pair hash set answering as NumPy's isin on both paths."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from embrec.nn import compiled, optim, pairwise, sampling
from embrec.nn.optim import RowAdam
from embrec.nn.pairwise import bpr_factor_loss, gather_rows


def _bpr_grads(tables, users, pos, neg, reg, bias_reg):
    params = [torch.nn.Parameter(t.clone()) for t in tables]
    loss = bpr_factor_loss(*params, users, pos, neg, reg=reg, bias_reg=bias_reg)
    (2.5 * loss).backward()  # an incoming gradient other than 1 scales every row gradient
    return loss.detach(), [p.grad.to_dense() for p in params]


@pytest.mark.parametrize("k", [1, 3])
def test_compiled_bpr_loss_equals_the_torch_path(monkeypatch, k):
    pytest.importorskip("numba")
    g = torch.Generator().manual_seed(3)
    tables = [
        torch.randn(40, 16, generator=g) * 0.3,
        torch.randn(60, 16, generator=g) * 0.3,
        torch.randn(60, generator=g) * 0.1,
    ]
    users = torch.randint(1, 40, (50,), generator=g)
    pos = torch.randint(1, 60, (50,), generator=g)
    neg = torch.randint(1, 60, (50, k), generator=g)
    pos[:5] = 7  # one positive drawn five times, also drawn as a negative
    neg[:3, 0] = 7
    compiled = _bpr_grads(tables, users, pos, neg, 1e-2, 1e-3)
    monkeypatch.setattr(pairwise, "_compiled", lambda *tables: False)
    reference = _bpr_grads(tables, users, pos, neg, 1e-2, 1e-3)
    torch.testing.assert_close(compiled[0], reference[0], rtol=1e-5, atol=1e-6)
    for got, want in zip(compiled[1], reference[1]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_row_adam_equals_the_torch_path(monkeypatch, dtype):
    """Five steps on a 2-D table and a 1-D bias drawn at the same rows, several times per step (one
    compiled pass for both, repeats summed through the row map), and a third table drawn at distinct
    rows (the pass that sums nothing): the compiled step moves every row as the sort-and-gather step
    does, and leaves undrawn rows alone."""
    pytest.importorskip("numba")
    g = torch.Generator().manual_seed(5)
    start = [
        torch.randn(30, 8, generator=g, dtype=dtype),
        torch.randn(30, generator=g, dtype=dtype),
        torch.randn(30, 3, generator=g, dtype=dtype),
    ]
    # rows 25..29 never drawn
    draws = [
        (torch.randint(0, 25, (40,), generator=g), torch.randperm(25, generator=g)[:20])
        for _ in range(5)
    ]
    weights = [
        [
            torch.randn((n,) + s.shape[1:], generator=g, dtype=dtype)
            for n, s in zip((40, 40, 20), start)
        ]
        for _ in range(5)
    ]

    def run():
        params = [torch.nn.Parameter(s.clone()) for s in start]
        opt = RowAdam(params, lr=0.05)
        for rows, w in zip(draws, weights):
            opt.zero_grad()
            shared = rows[0]
            loss = (gather_rows(params[0], shared) * w[0]).sum()
            loss = loss + (gather_rows(params[1], shared) * w[1]).sum()
            loss = loss + (gather_rows(params[2], rows[1]) * w[2]).sum()
            loss.backward()
            opt.step()
        return [p.detach() for p in params], [float(opt.state[p]["step"]) for p in params]

    compiled, steps = run()
    assert steps == [5.0, 5.0, 5.0]
    monkeypatch.setattr(optim, "_on_cpu", lambda p: False)
    reference, _ = run()
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for got, want, s in zip(compiled, reference, start):
        torch.testing.assert_close(got, want, **tol)
        assert torch.equal(got[25:], s[25:]) and not torch.equal(got[:25], s[:25])


def test_bpr_fit_equals_the_torch_path(monkeypatch):
    """Eight epochs of BPR (two negatives, rows drawn many times per batch) with the compiled loss and
    Adam step and with the PyTorch ones: the same model up to float rounding."""
    pytest.importorskip("numba")
    from embrec.models.bpr import BPR
    from tests.conftest import make_log

    rng = np.random.default_rng(2)
    log = make_log([(f"u{u}", f"i{rng.integers(0, 30)}") for u in range(40) for _ in range(6)])

    def fit():
        return BPR(factors=8, epochs=8, batch_size=50, lr=0.05, n_negatives=2, seed=1).fit(log)

    compiled = fit()
    monkeypatch.setattr(pairwise, "_compiled", lambda *tables: False)
    monkeypatch.setattr(optim, "_on_cpu", lambda p: False)
    reference = fit()
    for name in ("user_factors_", "item_factors_", "item_bias_"):
        got, want = getattr(compiled, name), getattr(reference, name)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert np.abs(want).max() > 0.1  # trained, not at zero


def test_rows_outside_a_table_are_refused_before_anything_moves():
    pytest.importorskip("numba")
    table = torch.nn.Parameter(torch.ones(10, 4))
    opt = RowAdam([table], lr=0.1)
    table.grad = torch.sparse_coo_tensor(
        torch.tensor([[2, 10]]), torch.ones(2, 4), (10, 4), check_invariants=False
    )
    with pytest.raises(IndexError):
        opt.step()
    assert torch.equal(table.detach(), torch.ones(10, 4))
    tables = [torch.zeros(5, 3), torch.zeros(6, 3), torch.zeros(6)]
    with pytest.raises(IndexError):
        bpr_factor_loss(
            *tables, torch.tensor([1, 5]), torch.tensor([1, 2]), torch.tensor([[3], [4]])
        )
    with pytest.raises(IndexError):
        bpr_factor_loss(
            *tables, torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor([[3], [-1]])
        )


@pytest.mark.parametrize("path", ["compiled", "numpy"])
def test_key_set_answers_do_not_depend_on_insertion_order(monkeypatch, path):
    """The hash set built from keys in two orders (so the probe chains differ) answers every query alike,
    as NumPy's isin does, compiled and without Numba."""
    if path == "compiled":
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(compiled, "kernels", lambda: None)
    rng = np.random.default_rng(9)
    collide = np.arange(1, 300) << 44  # keys that share home slots
    keys = np.concatenate([rng.integers(0, 2**40, 5000), collide])
    query = np.concatenate([keys[::2], rng.integers(0, 2**40, 5000), (np.arange(1, 600) << 44)])
    expect = np.isin(query, keys)
    assert sampling.KeySet(keys).contains(query).tolist() == expect.tolist()
    assert sampling.KeySet(keys[::-1].copy()).contains(query).tolist() == expect.tolist()


def test_without_numba_the_torch_paths_run_after_one_warning(monkeypatch, caplog):
    import embrec.nn

    monkeypatch.setitem(sys.modules, "embrec.nn.kernels", None)  # the import fails as without Numba
    monkeypatch.delattr(embrec.nn, "kernels", raising=False)
    with caplog.at_level(logging.WARNING, logger="embrec.nn.compiled"):
        assert compiled.kernels.__wrapped__() is None
    assert "pip install numba" in caplog.text
    monkeypatch.setattr(compiled, "kernels", lambda: None)
    assert not pairwise._compiled(torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(4))
    assert not optim._on_cpu(torch.zeros(3, 2))


def test_bpr_fold_in_pair_sums_equal_the_dense_block():
    """bpr_fold_pairs adds Σ_k w_k σ_kj to col and writes Σ_j π_j σ_kj, σ_kj = e_j / (e_j + e_hist[k]),
    as the (history x catalogue) matrix of NumPy's path gives them (a repeated history row included)."""
    pytest.importorskip("numba")
    from embrec.nn import kernels

    rng = np.random.default_rng(5)
    e = np.exp(rng.normal(size=300)).astype(np.float32)
    hist = np.array([3, 17, 17, 250, 0], dtype=np.int64)
    w = rng.uniform(0.5, 2.0, hist.size).astype(np.float32)
    pi = rng.dirichlet(np.ones(300)).astype(np.float32)
    col, row = np.full(300, 0.25, dtype=np.float32), np.empty(hist.size, dtype=np.float32)
    kernels.bpr_fold_pairs(e, hist, w, pi, col, row)
    sig = e[None, :].astype(np.float64) / (e[None, :] + e[hist][:, None])
    np.testing.assert_allclose(col, 0.25 + w @ sig, rtol=1e-5)
    np.testing.assert_allclose(row, sig @ pi, rtol=1e-5)
