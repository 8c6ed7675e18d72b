"""Fold-in solves each history on its own: a batch gives what one-at-a-time calls give, for every model
that folds in; the planted checkerboard folded in together keeps every user in their block; the
solution is the stationary point of the objective the docstrings state; memory stays bounded."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from embrec import Ragged
from embrec.datasets import synthetic
from embrec.models.als import ALS
from embrec.models.bpr import BPR
from embrec.models.explicit_mf import ExplicitMF
from embrec.models.foldin import _bfgs_update, distinct_items, quasi_newton
from embrec.models.implicit_mf import ImplicitMF
from embrec.models.rating_dnn import RatingDNN
from embrec.models.sasrec import SASRec
from embrec.models.softmax_dnn import SoftmaxDNN
from embrec.models.two_tower import TwoTower
from tests.conftest import make_log
from tests.test_explicit_models import low_rank_ratings


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def block_log(n_users: int = 50, block: int = 25, bought: int = 12, seed: int = 0):
    """Two user blocks x two item blocks (the issue's planted checkerboard, 50 users): user u buys
    ``bought`` random items of block u % 2 (items 0..24 or 25..49)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for u in range(n_users):
        base = (u % 2) * block
        pairs += [(u, int(i) + base) for i in rng.choice(block, bought, replace=False)]
    return make_log(pairs)


IMPLICIT = {
    "als": lambda: ALS(
        factors=8, regularization=1.0, alpha=10.0, iterations=10, num_threads=1, seed=0
    ),
    "bpr": lambda: BPR(
        factors=8, epochs=40, batch_size=64, lr=0.05, reg=1e-2, n_negatives=4, seed=0
    ),
    "bpr-unverified": lambda: BPR(
        factors=8,
        epochs=40,
        batch_size=64,
        lr=0.05,
        reg=1e-2,
        n_negatives=4,
        verify_negatives=False,
        neg_alpha=0.5,
        seed=0,
    ),
    "implicit-mf": lambda: ImplicitMF(
        factors=8, epochs=40, batch_size=64, lr=0.05, reg=1e-3, seed=0
    ),
}


@pytest.fixture(scope="module")
def blocks():
    log = block_log()
    return log, {name: make().fit(log) for name, make in IMPLICIT.items()}


def _histories(log, n: int, seed: int = 1) -> list[list]:
    """n new users: a random half of one block's items each (alternating blocks), as raw ids."""
    rng = np.random.default_rng(seed)
    raw = log.items.raw_ids
    return [list(raw[rng.choice(25, 6, replace=False) + (u % 2) * 25]) for u in range(n)]


@pytest.mark.parametrize("name", list(IMPLICIT))
def test_batched_fold_in_equals_one_at_a_time(blocks, name):
    log, models = blocks
    model = models[name]
    hist = _histories(log, 50) + [
        [log.items.raw_ids[3]] * 4 + [log.items.raw_ids[30]]
    ]  # repeats, mixed
    together = model.user_embeddings(histories=hist)
    alone = np.stack([model.user_embeddings(histories=[h])[0] for h in hist])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)
    # and the ranking: the regression case of the issue (3 of 50 users got a wrong-block item together)
    rec_together = model.recommend(histories=hist[:50], k=5, exclude_seen=True).ids
    rec_alone = [model.recommend(histories=[h], k=5, exclude_seen=True).ids[0] for h in hist[:50]]
    assert rec_together.tolist() == [r.tolist() for r in rec_alone]
    if name != "als":  # the models of the defect: their top 3 stays in the user's own block
        for u, row in enumerate(rec_together[:, :3]):
            assert all((log.items.encode([i])[0] - 1) // 25 == u % 2 for i in row), (u, row)


@pytest.mark.parametrize("name", ["bpr", "bpr-unverified", "implicit-mf"])
def test_fold_in_converges_to_the_stationary_point_of_the_stated_objective(blocks, name):
    """The gradient of the docstring's objective, written out here by hand (autograd on the expected
    loss over the sampler, plus the Gaussian user prior), vanishes at the folded-in vector once BFGS
    may run to convergence; at the default step cap the recommendations are already the converged ones."""
    log, models = blocks
    m = models[name]
    hist = Ragged.from_lists([[1, 2, 2, 5, 9], [30, 31, 44]])
    default_steps = m.fold_in_steps
    raw = [list(log.items.decode(h)) for h in hist.to_lists()]
    capped = m.recommend(histories=raw, k=5, exclude_seen=True).ids
    m.fold_in_steps = 100
    try:
        factors, biases = m.fold_in(hist)
        converged = m.recommend(histories=raw, k=5, exclude_seen=True).ids
    finally:
        m.fold_in_steps = default_steps
    assert capped.tolist() == converged.tolist()
    q = torch.tensor(m.item_factors_, dtype=torch.float64)
    b = torch.tensor(m.item_bias_ + m.global_bias_, dtype=torch.float64)
    pi0 = torch.tensor(m.sampler_probabilities(), dtype=torch.float64)
    for (items, counts), f, c in zip(distinct_items(hist), factors, biases):
        w = torch.tensor(m._fold_in_weights(counts), dtype=torch.float64)
        it = torch.as_tensor(items)
        p = torch.tensor(f, dtype=torch.float64, requires_grad=True)
        cu = torch.tensor(float(c), dtype=torch.float64, requires_grad=True)
        s = q @ p + b
        if isinstance(m, BPR):
            pi = pi0.clone()
            if m.verify_negatives:
                pi[it] = 0.0
                pi = pi / pi.sum()
            loss = (
                w * (torch.nn.functional.softplus(s[None, :] - s[it][:, None]) * pi).sum(1)
            ).sum()
            loss = loss + m.reg * w.sum() * p @ p
            params = [p]
        else:
            s = s + cu
            k = m.n_negatives
            loss = (
                (w * torch.nn.functional.softplus(-s[it])).sum()
                + k * w.sum() * (pi0 * torch.nn.functional.softplus(s)).sum()
                + m.reg * (1 + k) * w.sum() * p @ p
            )
            params = [p, cu]
        # + the Gaussian prior fitted to the trained users, at the calibrated weight
        ctx = m._fold_in_context()
        prec = torch.tensor(m._prior_weight() * ctx["prior_precision"])
        zz = torch.cat([p, cu[None]]) if len(params) == 2 else p
        dz = zz - torch.tensor(ctx["prior_mean"])
        loss = loss + 0.5 * dz @ prec @ dz
        grads = torch.autograd.grad(loss, params)
        scale = float(w.sum())
        assert max(float(g.abs().max()) for g in grads) < 1e-3 * scale, grads


def test_als_fold_in_matches_the_library_recalculate_user(blocks):
    _, models = blocks
    m = models["als"]
    import scipy.sparse as sp

    hist = Ragged.from_lists([[1, 2, 2, 5], [30, 40]])
    ours = m.fold_in(hist)
    counts = sp.csr_matrix(
        (np.ones(hist.values.size, dtype=np.float32), (hist.row_ids, hist.values)),
        shape=(2, m.items_.size),
    )
    counts.sum_duplicates()
    lib = m._library_model()
    lib.user_factors, lib.item_factors = m.user_factors_, m.item_factors_
    # the library gets the matrix training gives it: counts through the model's confidence
    theirs = lib.recalculate_user(np.arange(2), m._confidences(counts))
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


def test_rating_models_fold_in_batched_equals_one_at_a_time():
    train, _, _ = low_rank_ratings()
    models = [
        ExplicitMF(
            factors=8,
            l2=0.01,
            gravity=0.1,
            table_l2=0.01,
            epochs=20,
            batch_size=64,
            lr=0.5,
            valid_fraction=0.0,
        ).fit(train),
        RatingDNN(
            factors=8,
            hidden=(16, 8),
            dropout=0.0,
            l2=0.001,
            epochs=10,
            batch_size=128,
            lr=0.01,
            implicit=0.0,
        ).fit(train),
    ]
    raw = train.items.raw_ids
    rng = np.random.default_rng(0)
    hist = [list(raw[rng.choice(raw.size, n, replace=False)]) for n in (1, 3, 7, 20, 5)]
    ratings = [list(rng.integers(1, 6, len(h)).astype(float)) for h in hist]
    for m in models:
        together = np.stack([m.user_embedding(history=h, ratings=r) for h, r in zip(hist, ratings)])
        batch = m.recommend(histories=hist, ratings=ratings, k=5).ids
        alone = [m.recommend(histories=[h], ratings=[r], k=5).ids[0] for h, r in zip(hist, ratings)]
        assert batch.tolist() == [a.tolist() for a in alone], type(m).__name__
        emb = m.user_embeddings(histories=hist)
        emb_alone = np.stack([m.user_embeddings(histories=[h])[0] for h in hist])
        np.testing.assert_allclose(emb, emb_alone, rtol=0, atol=1e-6)
        assert np.isfinite(together).all()


def test_rating_dnn_gauss_newton_reaches_a_stationary_point():
    """Without hidden layers the user's loss is a ridge regression: the fold-in equals its closed form."""
    train, _, _ = low_rank_ratings()
    m = RatingDNN(
        factors=4, hidden=(), dropout=0.0, l2=0.01, epochs=5, batch_size=128, lr=0.01, implicit=0.0
    ).fit(train)
    items = [1, 4, 9, 12]
    r = np.array([5.0, 1.0, 4.0, 2.0])
    p, bu = m._fold_in(Ragged.from_lists([items]), r)
    net = m.net_
    q = net.item.weight.detach().double().numpy()[items]
    w = net.out.weight.detach().double().numpy()[0]  # (2d,): the dense part is linear in [p, q]
    x = np.hstack([q + w[:4], np.ones((4, 1))])  # d r̂ / d [p, b_u]
    const = (
        q @ w[4:]
        + float(net.out.bias.detach())
        + float(net.mean)
        + net.item_bias.weight.detach().double().numpy()[items, 0]
    )
    n = len(items)
    a = x.T @ x / n + m.l2 * np.eye(5)
    expect = np.linalg.solve(a, x.T @ (r - const) / n)
    np.testing.assert_allclose(np.append(p.numpy(), bu.numpy()), expect, atol=1e-4)


def test_deep_models_fold_in_batched_equals_one_at_a_time():
    log = synthetic(n_users=60, n_items=40, n_interactions=800, seed=0)
    models = [
        TwoTower(
            dim=8,
            feature_dim=4,
            item_hidden=(16,),
            user_hidden=(16,),
            epochs=2,
            min_epoch_examples=0,
            seed=0,
        ).fit(log),
        SoftmaxDNN(
            dim=8,
            feature_dim=4,
            hidden=(16,),
            epochs=2,
            batch_size=64,
            min_epoch_examples=0,
            seed=0,
        ).fit(log),
        SASRec(dim=8, epochs=2, seed=0).fit(log),
    ]
    raw = log.items.raw_ids
    hist = [list(raw[[1, 2, 3]]), list(raw[[5]]), list(raw[[7, 8, 9, 10, 11, 12]])]
    for m in models:  # SASRec has no user vector to compare: its scores
        embed = m.user_embeddings if hasattr(m, "user_embeddings") else m.scores
        together = embed(histories=hist)
        alone = np.stack([embed(histories=[h])[0] for h in hist])
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6, err_msg=type(m).__name__)


def test_long_history_on_a_large_catalogue_stays_in_bounded_memory(blocks):
    """A 1,000-item history over 20,000 items: the solver streams history blocks (1 MiB each), so the
    peak stays far below the 1,000 x 20,000 float32 matrix (80 MB) the old fold-in built ~11 times."""
    _, models = blocks
    m = BPR(factors=8, seed=0)
    small = models["bpr"]
    for attr in ("users_", "items_", "seen_", "fingerprint_"):
        setattr(m, attr, getattr(small, attr))
    rng = np.random.default_rng(0)
    n = 20_001
    m.item_factors_ = (rng.standard_normal((n, 8)) * 0.3).astype(np.float32)
    m.item_bias_ = (rng.standard_normal(n) * 0.1).astype(np.float32)
    m.global_bias_ = 0.0
    m.item_counts_ = np.r_[0, rng.integers(1, 50, n - 1)]
    m.user_factors_, m.user_bias_ = small.user_factors_, small.user_bias_
    m.fold_in_prior_ = 0.1
    m._fold_in_context()  # model-level tables, built once, not counted
    hist = Ragged.from_lists([rng.choice(np.arange(1, n), 1000, replace=False)])
    tracemalloc.start()
    factors, _ = m.fold_in(hist)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.isfinite(factors).all()
    assert peak < 60e6, peak


@pytest.mark.parametrize("product,biases", [(True, True), (False, False)])
def test_rating_dnn_split_first_layer_equals_the_torch_network(product, biases):
    """Scoring and the fold-in's gradient run in numpy with the first layer's item half precomputed:
    the ratings equal the torch network's on the same vectors, and the gradient of the user's loss
    Σ (r̂ − r)² / n + l2 |z|² equals autograd's through the torch network (two hidden ReLU layers)."""
    train, _, _ = low_rank_ratings()
    m = RatingDNN(
        factors=6,
        hidden=(16, 8),
        dropout=0.0,
        l2=0.01,
        epochs=3,
        batch_size=128,
        lr=0.01,
        implicit=0.0,
        product=product,
        biases=biases,
        clip=False,
    ).fit(train)
    rng = np.random.default_rng(0)
    p = torch.randn(3, 6, dtype=torch.float32) * 0.5
    bu = torch.randn(3, dtype=torch.float32) * 0.2
    n_items = m.items_.size
    with torch.no_grad():
        expect = m.net_.head(
            p[:, None, :].expand(3, n_items, -1),
            m.net_.item.weight[None].expand(3, -1, -1),
            bu[:, None].expand(3, n_items),
            m.net_.item_bias.weight[:, 0][None].expand(3, -1),
            biases,
        ).numpy()
    np.testing.assert_allclose(m._rate_all(p, bu), expect, rtol=0, atol=1e-5)
    items = rng.choice(np.arange(1, n_items), 9, replace=False)
    r = rng.integers(1, 6, 9).astype(np.float64)
    z = np.r_[rng.standard_normal(6) * 0.5, 0.3]
    grad, _ = m._fixed_net().gradient(items, r, z, m.l2)
    net = m.net_.double()
    zt = torch.tensor(z, requires_grad=True)
    pred = net.head(
        zt[:6].expand(9, -1),
        net.item.weight[items],
        zt[6].expand(9),
        net.item_bias.weight[items, 0],
        biases,
    )
    loss = ((pred - torch.as_tensor(r)) ** 2).mean() + m.l2 * (zt @ zt)
    (expect_grad,) = torch.autograd.grad(loss, zt)
    np.testing.assert_allclose(grad, expect_grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rescale", [False, True])
def test_bfgs_update_satisfies_the_secant_equation(rescale):
    """The updated inverse Hessian maps the change of gradient to the step (H⁻¹ y = s), stays
    symmetric, and leaves its input untouched; a pair without positive curvature is refused."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 9))
    hi = np.linalg.inv(a @ a.T + np.eye(6))
    s, y = rng.standard_normal(6), rng.standard_normal(6)
    if s @ y < 0:
        y = -y
    before = hi.copy()
    out = _bfgs_update(hi, s, y, rescale=rescale)
    np.testing.assert_allclose(out @ y, s, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, out.T, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(hi, before)
    assert _bfgs_update(hi, s, -y, rescale=rescale) is None


def test_quasi_newton_solves_a_quadratic_and_stops_at_the_tolerance():
    """On f(z) = ½ zᵀAz − bᵀz the exact inverse Hessian gives the minimiser A⁻¹b in one unchecked
    step: one gradient (at the start) and nothing more."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 8))
    a = a @ a.T + np.eye(5)
    b = rng.standard_normal(5)
    calls = []

    def gradient(u, z):
        calls.append(u)
        return a @ z - b

    z = quasi_newton(
        gradient, np.zeros((1, 5)), np.linalg.inv(a)[None], np.ones(1), steps=8, tol=1e3
    )
    np.testing.assert_allclose(z[0], np.linalg.solve(a, b), rtol=1e-10)
    assert len(calls) == 1


def test_fold_in_runs_blas_on_one_thread_and_restores_it():
    """Per-user fold-in algebra is small: BLAS threads only cost there (and far more on a busy
    machine). The decorator limits BLAS to one thread inside and leaves the caller's setting alone."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from embrec.models.foldin import one_blas_thread

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen = []
    probe = one_blas_thread(lambda: seen.append(blas_threads()) or "done")
    with threadpool_limits(2, "blas"):
        assert probe() == "done" and seen[-1] == {1}
        assert blas_threads() == {2}
    with threadpool_limits(1, "blas"):  # already one thread: nothing to change
        assert probe() == "done" and seen[-1] == {1}


@pytest.mark.parametrize("name", ["bpr", "bpr-unverified"])
def test_bpr_fold_in_compiled_and_numpy_paths_agree(blocks, monkeypatch, name):
    """BPR's fold-in gradient runs one compiled pass (Numba) or NumPy's memory-bounded blocks (without
    Numba): the same user vectors to float32 rounding, the same top 5."""
    pytest.importorskip("numba")
    from embrec.nn import compiled

    log, models = blocks
    model = models[name]
    hist = _histories(log, 20) + [[log.items.raw_ids[3]] * 4 + [log.items.raw_ids[30]]]
    fast = model.user_embeddings(histories=hist)
    fast_top = model.recommend(histories=hist, k=5, exclude_seen=True).ids
    monkeypatch.setattr(compiled, "kernels", lambda: None)
    slow = model.user_embeddings(histories=hist)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-4)
    assert model.recommend(histories=hist, k=5, exclude_seen=True).ids.tolist() == fast_top.tolist()
